import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ctrl-C for a command that stops cleanly, shared by `call` and `import`: the first SIGINT is
/// counted and runs `onFirst` (`call` cancels its call, which sends `rpc.cancel`; `import` polls
/// `isFired` and stops sending); a second one exits at once with `exitStatus`. A dispatch
/// source delivers the signal, so nothing runs in signal context. Until `stop()`, SIGINT's
/// default action is off.
final class Interrupts: @unchecked Sendable {
    /// 128 + SIGINT: what shells report for an interrupted command.
    static let exitStatus: Int32 = 130

    private final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    private let source: any DispatchSourceSignal
    private let received = Counter()

    init(onFirst: @escaping @Sendable () -> Void = {}) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        let received = self.received
        source.setEventHandler {
            let (_, count) = received.value.add(1, ordering: .sequentiallyConsistent)
            if count == 1 { onFirst() } else { exit(Self.exitStatus) }
        }
        source.resume()
    }

    /// The SIGINTs received so far.
    var count: Int { received.value.load(ordering: .sequentiallyConsistent) }

    /// Ctrl-C was pressed.
    var isFired: Bool { count > 0 }

    /// Gives SIGINT its default action back.
    func stop() {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }
}
