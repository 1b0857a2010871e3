// How many of one share's copies may run at once, across all connections;
// the others wait in the worker pool's queue (they never fail for it). The
// pool counts copies in and out under its own lock; the limit itself may
// change at any time.
#pragma once

#include <atomic>

namespace copyoffload {

class ConcurrencyLimit {
public:
	// 0 lifts the limit. Copies already running are not affected.
	void set_limit(unsigned limit) { limit_.store(limit); }
	[[nodiscard]] unsigned limit() const { return limit_.load(); }

	[[nodiscard]] bool admits() const
	{
		unsigned limit = limit_.load();
		return limit == 0 || running_.load() < limit;
	}
	void enter() { running_.fetch_add(1); }
	void leave() { running_.fetch_sub(1); }
	[[nodiscard]] unsigned running() const { return running_.load(); }

private:
	std::atomic<unsigned> limit_{0};
	std::atomic<unsigned> running_{0};
};

} // namespace copyoffload
