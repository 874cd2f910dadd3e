import MailboxDimension
import SegmentdCLI

// segmentd's command line — serve, call, import, export, migrate, … — with one more
// dimension. `custom-segmentd serve` answers {"dimension": "mailbox", …} filters.
await Segmentd.main(dimensions: [MailboxDimension()])
