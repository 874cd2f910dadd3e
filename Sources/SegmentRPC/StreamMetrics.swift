import CoreMetrics

/// `segmentd_stream_rows_total` by `method`: contacts `segments.resolve` and
/// `segments.export` sent (an export to a file counts its rows when written); and
/// `segmentd_events_delivered_total`, events `events.subscribe` sent. The bytes of the
/// streams are LineRPC's (`segmentd_stream_bytes_total`).
struct StreamMetrics: Sendable {
    let resolvedRows: Counter
    let exportedRows: Counter
    let deliveredEvents: Counter

    init(factory: any MetricsFactory) {
        func rows(_ method: String) -> Counter {
            Counter(label: "segmentd_stream_rows_total", dimensions: [("method", method)], factory: factory)
        }
        resolvedRows = rows("segments.resolve")
        exportedRows = rows("segments.export")
        deliveredEvents = Counter(label: "segmentd_events_delivered_total", factory: factory)
    }
}
