import SegmentCore
import WireJSON

/// A compiled engagement filter.
struct EngagementPredicate: ContactPredicate {
    enum Test: Sendable {
        case before(TimeValue), after(TimeValue), between(TimeValue, TimeValue)
        case withinLast(days: Int64), notWithinLast(days: Int64)
        case never, ever
    }

    let dimension: String
    let event: Int
    let test: Test
    var aspects: Set<String> { ["engagement:\(EngagementDimension.events[event])"] }

    var isTimeDependent: Bool {
        switch test {
        case .withinLast, .notWithinLast: return true
        default: return false
        }
    }

    func evaluate(_ t: Double?, now: Double) -> Bool {
        switch test {
        case .never: return t == nil
        case .ever: return t != nil
        case .before(let x): return t.map(x.timeIsBefore) ?? false
        case .after(let x): return t.map(x.timeIsAfter) ?? false
        case .between(let lo, let hi): return t.map { $0 >= lo.start && hi.timeIsAtOrBeforeEnd($0) } ?? false
        case .withinLast(let days): return t.map { $0 >= now - Double(days) * 86_400 } ?? false
        case .notWithinLast(let days): return t.map { $0 < now - Double(days) * 86_400 } ?? true
        }
    }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        evaluate(EngagementDimension.index(book, dimension).time(event, slot), now: now)
    }

    /// The test as an interval over the event time at `now`, for the fast column scan.
    func range(now: Double) -> DoubleRange {
        switch test {
        case .never: return DoubleRange(negated: true, missing: true)
        case .ever: return DoubleRange()
        case .before(let x): return .below(x.start)
        case .after(let x):
            if case .day(_, let end) = x { return DoubleRange(lo: end) }
            return .above(x.start)
        case .between(let lo, let hi):
            if case .day(_, let end) = hi { return DoubleRange(lo: lo.start, hi: end.nextDown) }
            return DoubleRange(lo: lo.start, hi: hi.start)
        case .withinLast(let days): return DoubleRange(lo: now - Double(days) * 86_400)
        case .notWithinLast(let days): return DoubleRange(hi: (now - Double(days) * 86_400).nextDown, missing: true)
        }
    }

    func resolve(in book: Book, at now: Double) -> ContactSet {
        ContactSet.build(column: EngagementDimension.index(book, dimension).columns[event], range: range(now: now), capacity: book.slotCount)
    }

    var cost: Int { 10 }

    func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet {
        ContactSet.filter(candidates, column: EngagementDimension.index(book, dimension).columns[event], range: range(now: now))
    }

    func explain(slot: Int, in book: Book, at now: Double) -> String {
        let name = EngagementDimension.events[event]
        guard let t = EngagementDimension.index(book, dimension).time(event, slot) else { return "never had a \(name)" }
        let ok = evaluate(t, now: now)
        let when = ISOTime.format(t)
        switch test {
        case .before(let x): return "last \(name) \(when) is \(ok ? "" : "not ")before \(ISOTime.format(x.start))"
        case .after(let x): return "last \(name) \(when) is \(ok ? "" : "not ")after the given time (\(ISOTime.format(x.start)))"
        case .between: return "last \(name) \(when) is \(ok ? "" : "not ")in the range"
        case .withinLast(let d), .notWithinLast(let d):
            return "last \(name) \(when) is \(t >= now - Double(d) * 86_400 ? "" : "not ")within the last \(d) days (since \(ISOTime.format(now - Double(d) * 86_400)))"
        case .never, .ever: return "last \(name) \(when)"
        }
    }
}

extension EngagementDimension {
    public func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "event", "op", "value"])
        let eventName = try filter.string("event")
        guard let event = Self.events.firstIndex(of: eventName) else {
            throw .invalidParams(path: filter.path.member("event"), "unknown event \"\(eventName)\"; expected open, click or send")
        }
        let op = try filter.op(of: name, allowed: ["before", "after", "between", "within_last", "not_within_last", "never", "ever"])
        let path = filter.path.member("value")
        let test: EngagementPredicate.Test
        switch op {
        case "never", "ever":
            try filter.rejectValue(for: op)
            test = op == "never" ? .never : .ever
        case "within_last", "not_within_last":
            let days = try filter.object("value")
            try days.rejectUnknownKeys(allowed: ["days"])
            guard let n = try days.optionalInt("days", in: 1...Self.maxDays) else {
                throw .invalidParams(path: path.member("days"), "required")
            }
            test = op == "within_last" ? .withinLast(days: n) : .notWithinLast(days: n)
        case "between":
            let items = try filter.array("value")
            guard items.count == 2 else { throw .invalidParams(path: path, "between takes [low, high], got \(items.count) values") }
            let lo = try date(items[0], path.index(0), time), hi = try date(items[1], path.index(1), time)
            guard hi.timeIsAtOrBeforeEnd(lo.start) else { throw .invalidParams(path: path, "low is later than high") }
            test = .between(lo, hi)
        default:
            let x = try date(try filter.value("value"), path, time)
            test = op == "before" ? .before(x) : .after(x)
        }
        return EngagementPredicate(dimension: name, event: event, test: test)
    }

    private func date(_ raw: JSONValue, _ path: String, _ time: ISOTime) throws(SegmentError) -> TimeValue {
        guard let s = raw.stringValue, let t = time.parse(s) else {
            throw .invalidParams(path: path, "expected an ISO 8601 date or time like 2026-01-31 or 2026-01-31T08:00:00Z")
        }
        return t
    }
}
