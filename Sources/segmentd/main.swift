import SegmentdCLI

// segmentd with its built-in dimensions. A package that adds dimensions of its own builds
// its server the same way, passing them: `await Segmentd.main(dimensions: [MyDimension()])`
// (README: Adding a dimension; Examples/CustomDimension).
await Segmentd.main(dimensions: [])
