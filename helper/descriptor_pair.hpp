// The two descriptors of a COPY and what the daemon learned about them.
// smbd copies a file one chunk (1 MiB) at a time, so a registered pair
// serves every chunk of one copy: the descriptors cross the socket once
// (SCM_RIGHTS), are checked once, and the methods the kernel refused for
// these two files are skipped by later chunks instead of being tried and
// refused again on each.
#pragma once

#include "copy_piece.hpp"
#include "descriptor_check.hpp"
#include "unique_fd.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <variant>

namespace copyoffload {

class DescriptorPair {
public:
	DescriptorPair(UniqueFd source, UniqueFd destination);

	// Descriptors the caller keeps owning (a local copy): never closed.
	struct Borrowed {};
	DescriptorPair(int source, int destination, Borrowed);
	~DescriptorPair();
	DescriptorPair(const DescriptorPair &) = delete;
	DescriptorPair &operator=(const DescriptorPair &) = delete;

	static std::shared_ptr<DescriptorPair> make(UniqueFd source, UniqueFd destination)
	{
		return std::make_shared<DescriptorPair>(std::move(source),
							std::move(destination));
	}

	[[nodiscard]] int source() const { return source_.get(); }
	[[nodiscard]] int destination() const { return destination_.get(); }

	// check_descriptor_pair() of the two, made on the first call and
	// remembered (the access modes and file types of open descriptors do
	// not change). Any thread.
	const std::variant<PairIdentity, DescriptorRejection> &check();
	// check()'s result if it has been made, else none; never checks.
	[[nodiscard]] const std::variant<PairIdentity, DescriptorRejection> *checked() const
	{
		return checked_done_.load(std::memory_order_acquire) ? &check_ : nullptr;
	}

	// Methods the kernel refused for these two files as a whole (no
	// reflink here, another filesystem).
	MethodRefusals &refusals() { return refusals_; }

private:
	UniqueFd source_;
	UniqueFd destination_;
	std::once_flag checked_;
	std::variant<PairIdentity, DescriptorRejection> check_;
	std::atomic<bool> checked_done_{false}; // check_ is final
	MethodRefusals refusals_;
	bool borrowed_ = false;
};

} // namespace copyoffload
