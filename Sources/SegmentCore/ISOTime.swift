import Foundation

/// A point in time, or a whole calendar day, as written in a filter or a field value.
public enum TimeValue: Sendable, Equatable {
    /// A full timestamp: compares exactly.
    case instant(Double)
    /// A date without a time: the whole day `[start, end)` in the server's time zone.
    case day(start: Double, end: Double)

    /// The first moment the value covers.
    public var start: Double {
        switch self {
        case .instant(let t): return t
        case .day(let s, _): return s
        }
    }

    /// Whether the contact's time `t` is earlier than the value (than the day's start, for a date).
    public func timeIsBefore(_ t: Double) -> Bool { t < start }

    /// Whether `t` is later than the value (later than the day's end, for a date).
    public func timeIsAfter(_ t: Double) -> Bool {
        switch self {
        case .instant(let x): return t > x
        case .day(_, let end): return t >= end
        }
    }

    /// Whether `t` falls on the value: the same instant, or within the day.
    public func covers(_ t: Double) -> Bool {
        switch self {
        case .instant(let x): return t == x
        case .day(let s, let e): return t >= s && t < e
        }
    }

    /// Whether `t` is at or before the value's end (the inclusive upper end of `between`).
    public func timeIsAtOrBeforeEnd(_ t: Double) -> Bool {
        switch self {
        case .instant(let x): return t <= x
        case .day(_, let end): return t < end
        }
    }
}

/// ISO 8601 parsing and formatting for the subset the protocol uses.
///
/// Accepted: `2026-01-31` (a whole day in `timeZone`), `2026-01-31T08:00`, `2026-01-31T08:00:00`,
/// `2026-01-31T08:00:00.250`, each optionally followed by `Z` or `±HH:MM`; a time without a
/// zone is read in `timeZone`. Output is always UTC: `2026-01-31T08:00:00Z`.
public struct ISOTime: Sendable {
    public let timeZone: TimeZone

    public init(timeZone: TimeZone = TimeZone(identifier: "UTC")!) {
        self.timeZone = timeZone
    }

    /// Parses a date or timestamp; `nil` if `text` is not one.
    public func parse(_ text: String) -> TimeValue? {
        var bytes = Array(text.utf8)[...]
        guard let year = Self.digits(&bytes, 4), Self.expect(&bytes, UInt8(ascii: "-")),
            let month = Self.digits(&bytes, 2), Self.expect(&bytes, UInt8(ascii: "-")),
            let day = Self.digits(&bytes, 2),
            (1...12).contains(month), (1...Self.daysIn(month: month, year: year)).contains(day)
        else { return nil }
        let midnightUTC = Double(Self.daysFromCivil(year, month, day)) * 86_400
        if bytes.isEmpty {
            let start = localToUTC(midnightUTC)
            let end = localToUTC(midnightUTC + 86_400)
            return .day(start: start, end: end)
        }
        guard Self.expect(&bytes, UInt8(ascii: "T")) || Self.expect(&bytes, UInt8(ascii: " ")),
            let hour = Self.digits(&bytes, 2), Self.expect(&bytes, UInt8(ascii: ":")),
            let minute = Self.digits(&bytes, 2), hour < 24, minute < 60
        else { return nil }
        var seconds = 0.0
        if Self.expect(&bytes, UInt8(ascii: ":")) {
            guard let s = Self.digits(&bytes, 2), s < 61 else { return nil }
            seconds = Double(s)
            if Self.expect(&bytes, UInt8(ascii: ".")) {
                var scale = 0.1
                var any = false
                while let b = bytes.first, b >= 48, b <= 57 {
                    seconds += Double(b - 48) * scale
                    scale /= 10
                    any = true
                    bytes.removeFirst()
                }
                guard any else { return nil }
            }
        }
        let local = midnightUTC + Double(hour * 3600 + minute * 60) + seconds
        if bytes.isEmpty { return .instant(localToUTC(local)) }
        if bytes == [UInt8(ascii: "Z")] || bytes == [UInt8(ascii: "z")] { return .instant(local) }
        guard let sign = bytes.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") else { return nil }
        bytes.removeFirst()
        guard let oh = Self.digits(&bytes, 2) else { return nil }
        _ = Self.expect(&bytes, UInt8(ascii: ":"))
        guard let om = Self.digits(&bytes, 2), bytes.isEmpty, oh < 24, om < 60 else { return nil }
        let offset = Double(oh * 3600 + om * 60) * (sign == UInt8(ascii: "+") ? 1 : -1)
        return .instant(local - offset)
    }

    /// Parses a full timestamp only (a bare date is refused).
    public func parseInstant(_ text: String) -> Double? {
        if case .instant(let t) = parse(text) { return t }
        return nil
    }

    /// Parses a timestamp, or a date read as the start of that day.
    public func parseStart(_ text: String) -> Double? { parse(text)?.start }

    /// Formats a time as UTC ISO 8601, with milliseconds only when there are any.
    public static func format(_ t: Double) -> String {
        let totalMillis = (t * 1000).rounded()
        var secs = Int64((totalMillis / 1000).rounded(.down))
        let millis = Int64(totalMillis) - secs * 1000
        let days = Int64((Double(secs) / 86_400).rounded(.down))
        secs -= days * 86_400
        let (y, m, d) = civilFromDays(days)
        var out = "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2))"
        if millis != 0 { out += ".\(pad(millis, 3))" }
        return out + "Z"
    }

    /// Formats a time as a UTC date `YYYY-MM-DD`.
    public static func formatDay(_ t: Double) -> String {
        String(format(t).prefix(10))
    }

    private func localToUTC(_ local: Double) -> Double {
        if timeZone.identifier == "UTC" || timeZone.identifier == "GMT" { return local }
        let guess = local - Double(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: local)))
        return local - Double(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: guess)))
    }

    private static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    private static func digits(_ bytes: inout ArraySlice<UInt8>, _ n: Int) -> Int? {
        guard bytes.count >= n else { return nil }
        var value = 0
        for _ in 0..<n {
            let b = bytes.removeFirst()
            guard b >= 48, b <= 57 else { return nil }
            value = value * 10 + Int(b - 48)
        }
        return value
    }

    private static func expect(_ bytes: inout ArraySlice<UInt8>, _ c: UInt8) -> Bool {
        guard bytes.first == c else { return false }
        bytes.removeFirst()
        return true
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64((month + 9) % 12)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
