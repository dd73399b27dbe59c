import DescriptorBudget
import Foundation
import Testing

@Suite struct DescriptorBudgetTests {
    @Test func peersAreAdmittedBelowTheLimitLessTheReserve() {
        let budget = DescriptorBudget(limit: 128, reserve: 32)
        #expect(budget.admitsPeer(open: 95))
        #expect(!budget.admitsPeer(open: 96))
    }

    @Test func theCurrentBudgetKeepsATenthAndAtLeast32() {
        let budget = DescriptorBudget.current()
        #expect(budget.reserve == max(32, budget.limit / 10) || budget.limit == .max)
    }

    @Test func openDescriptorsCountsAFileOpenedAndClosed() throws {
        let before = DescriptorBudget.openDescriptors()
        let handle = try #require(FileHandle(forReadingAtPath: "/dev/null"))
        #expect(DescriptorBudget.openDescriptors() == before + 1)
        try handle.close()
        #expect(DescriptorBudget.openDescriptors() == before)
    }

    @Test func theGateCountsEveryRefusalAndLogsTheFirstOnly() {
        let open = OpenCount(85)
        let gate = DescriptorGate(budget: { DescriptorBudget(limit: 100, reserve: 10) }, openDescriptors: { open.value })
        #expect(gate.check() == nil)
        open.value = 89
        #expect(gate.check() == nil)
        open.value = 100
        let first = gate.check()
        #expect(first?.total == 1 && first?.shouldLog == true)
        #expect(first?.description == "low on file descriptors (100 open, limit 100, 10 kept for radios and replies)")
        let second = gate.check()
        #expect(second?.total == 2 && second?.shouldLog == false, "within a minute of the last log line")
        #expect(gate.refused == 2)
    }
}

/// A count the test changes while the gate reads it.
private final class OpenCount: @unchecked Sendable {
    var value: Int
    init(_ value: Int) { self.value = value }
}
