#include "share_registry.hpp"

#include "copy_planner.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace copyoffload {

ShareState::InFlight::InFlight(std::shared_ptr<ShareState> share) : share_(std::move(share))
{
	share_->in_flight_.fetch_add(1);
}

ShareState::InFlight &ShareState::InFlight::operator=(InFlight &&other) noexcept
{
	if (this != &other) {
		release();
		share_ = std::move(other.share_);
	}
	return *this;
}

ShareState::InFlight::~InFlight()
{
	release();
}

void ShareState::InFlight::release()
{
	if (share_) {
		share_->in_flight_.fetch_sub(1);
		share_.reset();
	}
}

copyoffload_share_stats ShareState::snapshot() const
{
	copyoffload_share_stats record{};
	copyoffload_share_name_set(record.name, name_.c_str());
	if (name_.empty()) {
		std::memset(record.name, 0, sizeof(record.name));
	}
	record.in_flight = in_flight_.load();
	// The two gauges are read one after the other while copies come and
	// go: never report more running than in flight.
	record.running = std::min(concurrency_.running(), record.in_flight);
	stats_.fill(record);
	return record;
}

ShareRegistry::ShareRegistry()
{
	shares_.emplace("", std::make_shared<ShareState>(""));
}

ShareBinding ShareRegistry::unattributed() const
{
	std::lock_guard lock(mutex_);
	return ShareBinding{
		.share = shares_.at(""),
		.order = {std::begin(default_method_order), std::end(default_method_order)},
		.max_segment = 0,
	};
}

bool ShareRegistry::forget_an_idle_share()
{
	// Held by the registry alone: no connection has it declared and no
	// copy runs under it, and only the registry (under mutex_) hands out
	// new references, so none can appear meanwhile.
	for (auto it = shares_.begin(); it != shares_.end(); ++it) {
		if (!it->first.empty() && it->second.use_count() == 1) {
			shares_.erase(it);
			return true;
		}
	}
	return false;
}

ShareBinding ShareRegistry::declare(const copyoffload_share &declaration,
				    bool &limits_changed)
{
	limits_changed = false;
	ShareBinding binding;
	for (std::uint8_t method : declaration.method_order) {
		if (method < COPYOFFLOAD_METHOD_COUNT) {
			binding.order.push_back(static_cast<copyoffload_method>(method));
		}
	}
	binding.max_segment = declaration.max_segment;
	binding.preallocate = (declaration.flags & COPYOFFLOAD_SHARE_NO_PREALLOCATE) == 0;

	std::string name(declaration.name, ::strnlen(declaration.name, sizeof(declaration.name)));
	std::lock_guard lock(mutex_);
	auto found = shares_.find(name);
	if (found == shares_.end()) {
		if (shares_.size() > max_shares && !forget_an_idle_share()) {
			return binding;
		}
		found = shares_.emplace(name, std::make_shared<ShareState>(name)).first;
	}
	binding.share = found->second;
	RateLimiter &rate = binding.share->rate_limiter();
	ConcurrencyLimit &concurrency = binding.share->concurrency();
	limits_changed = rate.rate() != declaration.max_bytes_per_second ||
			 concurrency.limit() != declaration.max_concurrent;
	rate.set_rate(declaration.max_bytes_per_second);
	concurrency.set_limit(declaration.max_concurrent);
	return binding;
}

std::vector<copyoffload_share_stats> ShareRegistry::page(std::uint32_t cursor, std::size_t max,
							 std::uint32_t &next) const
{
	std::vector<std::shared_ptr<ShareState>> selected;
	{
		std::lock_guard lock(mutex_);
		next = 0;
		if (cursor < shares_.size()) {
			auto first = std::next(shares_.begin(), cursor);
			for (auto it = first; it != shares_.end() && selected.size() < max; ++it) {
				selected.push_back(it->second);
			}
			if (cursor + selected.size() < shares_.size()) {
				next = static_cast<std::uint32_t>(cursor + selected.size());
			}
		}
	}
	std::vector<copyoffload_share_stats> records;
	records.reserve(selected.size());
	for (const auto &share : selected) {
		records.push_back(share->snapshot());
	}
	return records;
}

} // namespace copyoffload
