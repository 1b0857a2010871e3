// What the daemon knows about each share, keyed by the share's NAME so
// that limits and counters hold across every smbd process (connection)
// serving it: the bandwidth and concurrency limits, the statistics, and
// the copies in flight. Connections bind their share ids to these.
#pragma once

#include "concurrency_limit.hpp"
#include "copyoffload_protocol.h"
#include "rate_limiter.hpp"
#include "share_stats.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace copyoffload {

class ShareState {
public:
	explicit ShareState(std::string name) : name_(std::move(name)) {}

	[[nodiscard]] const std::string &name() const { return name_; }
	// "" stands for copies that named no share.
	[[nodiscard]] bool unattributed() const { return name_.empty(); }

	RateLimiter &rate_limiter() { return rate_; }
	ConcurrencyLimit &concurrency() { return concurrency_; }
	ShareStats &stats() { return stats_; }

	// Counts a copy from acceptance until its job is gone.
	class InFlight {
	public:
		explicit InFlight(std::shared_ptr<ShareState> share);
		InFlight(InFlight &&other) noexcept = default;
		InFlight &operator=(InFlight &&other) noexcept;
		InFlight(const InFlight &) = delete;
		InFlight &operator=(const InFlight &) = delete;
		~InFlight();

	private:
		void release();
		std::shared_ptr<ShareState> share_;
	};

	// The STATS_REPLY record of this share.
	[[nodiscard]] copyoffload_share_stats snapshot() const;

private:
	std::string name_;
	RateLimiter rate_;
	ConcurrencyLimit concurrency_;
	ShareStats stats_;
	std::atomic<unsigned> in_flight_{0};
};

// A connection's share id: the share, and the policy that connection
// declared for it (method order, largest segment).
struct ShareBinding {
	std::shared_ptr<ShareState> share;
	std::vector<copyoffload_method> order; // preference and allow-list
	std::uint64_t max_segment = 0;         // 0: the engine's defaults
	bool preallocate = true;               // where it pays (preallocation.hpp)
};

class ShareRegistry {
public:
	// Distinct share names kept. A SHARE for yet another name makes room
	// by forgetting a name no connection has declared (its counters go
	// with it: [homes] declares one name per user); with all of them in
	// use it is refused.
	static constexpr std::size_t max_shares = 4096;

	ShareRegistry();

	// Where copies that name no share are counted.
	[[nodiscard]] ShareBinding unattributed() const;

	// Binds a valid SHARE declaration: finds or creates its share's state
	// and applies its limits to it (the latest declaration of a name
	// wins; `limits_changed` says whether that changed them). Null share
	// when max_shares names are known already and all are in use.
	ShareBinding declare(const copyoffload_share &declaration, bool &limits_changed);

	// Records of up to `max` shares in name order, from index `cursor`;
	// `next` is the cursor of the following page, 0 after the last.
	std::vector<copyoffload_share_stats> page(std::uint32_t cursor, std::size_t max,
						  std::uint32_t &next) const;

private:
	// Erases one share only the registry holds; false if none. Under mutex_.
	bool forget_an_idle_share();

	mutable std::mutex mutex_;
	std::map<std::string, std::shared_ptr<ShareState>> shares_;
};

} // namespace copyoffload
