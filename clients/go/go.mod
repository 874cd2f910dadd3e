module github.com/segmentd/segmentd/clients/go

go 1.19
