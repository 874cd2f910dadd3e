import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// When a command draws a progress line on stderr.
enum ProgressMode: String, CaseIterable, Sendable {
    case auto, always, never

    /// `auto`: only when stderr is a terminal, so logs and pipes never get control characters.
    var isEnabled: Bool {
        switch self {
        case .auto: return isatty(STDERR_FILENO) == 1
        case .always: return true
        case .never: return false
        }
    }
}

/// One self-overwriting status line on stderr (`\r` + text + clear to end of line), redrawn
/// at most every 100 ms. Disabled, every call is a no-op, so callers need not check.
///
/// ```swift
/// let progress = ProgressLine(enabled: ProgressMode.auto.isEnabled)
/// progress.update { elapsed in "\(rows) rows in \(elapsed) s" }
/// progress.clear()
/// ```
final class ProgressLine: Sendable {
    let enabled: Bool
    let start = ContinuousClock.now
    private let lastDraw = Mutex<ContinuousClock.Instant?>(nil)
    private static let interval = Duration.milliseconds(100)

    init(enabled: Bool) { self.enabled = enabled }

    /// Seconds since the line was created.
    var elapsed: Double { Self.seconds(ContinuousClock.now - start) }

    /// Redraws with `render(elapsedSeconds)` unless the last draw was under 100 ms ago
    /// (`force` redraws anyway). `render` is only called when a draw happens.
    func update(force: Bool = false, _ render: (Double) -> String) {
        guard enabled else { return }
        let now = ContinuousClock.now
        let due = lastDraw.withLock { last -> Bool in
            if !force, let last, now - last < Self.interval { return false }
            last = now
            return true
        }
        guard due else { return }
        var text = render(Self.seconds(now - start))
        let width = Self.terminalWidth() - 1
        if text.count > width { text = String(text.prefix(max(0, width))) }
        Self.write("\r" + text + "\u{1B}[K")
    }

    /// Erases the line (before a summary is printed).
    func clear() {
        guard enabled, lastDraw.withLock({ $0 != nil }) else { return }
        Self.write("\r\u{1B}[K")
    }

    private static func write(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Foundation.write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }

    static func terminalWidth() -> Int {
        var size = winsize()
        if ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col >= 20 { return Int(size.ws_col) }
        return 80
    }

    static func seconds(_ duration: Duration) -> Double {
        let (s, atto) = duration.components
        return Double(s) + Double(atto) / 1e18
    }

    // MARK: Formatting

    /// `1234567` → `1,234,567`.
    static func count(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return n < 0 ? "-" + out : out
    }

    /// A rate per second, or `-` before there is one.
    static func rate(_ amount: Double, over seconds: Double) -> String {
        guard seconds > 0.05 else { return "-" }
        return count(Int((amount / seconds).rounded()))
    }

    /// `h:mm:ss` or `m:ss`.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let total = Int(seconds.rounded())
        let (h, m, s) = (total / 3600, total / 60 % 60, total % 60)
        return h > 0 ? String(format: "%d:%02d:%02d", h, m, s) : String(format: "%d:%02d", m, s)
    }

    /// `12.3 MB`.
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    /// `[=========>          ]` for a fraction in 0...1.
    static func bar(_ fraction: Double, width: Int = 24) -> String {
        let f = min(max(fraction, 0), 1)
        let filled = Int((f * Double(width)).rounded(.down))
        if filled >= width { return "[" + String(repeating: "=", count: width) + "]" }
        return "[" + String(repeating: "=", count: filled) + ">" + String(repeating: " ", count: width - filled - 1) + "]"
    }

    /// The estimated time left from the fraction done so far.
    static func eta(fraction: Double, elapsed: Double) -> String {
        guard fraction > 0.001, elapsed > 0.2 else { return "--:--" }
        return duration(elapsed * (1 - fraction) / fraction)
    }
}
