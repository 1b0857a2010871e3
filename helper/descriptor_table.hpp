// One connection's registered descriptor pairs, by the handle its client
// chose. Bounded: registering beyond the bound forgets the least recently
// used pair, whose client is then answered ESTALE and sends the
// descriptors again. A pair in use by a copy stays open until that copy
// lets go of it, whatever happens to its handle.
#pragma once

#include "descriptor_pair.hpp"

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>

namespace copyoffload {

class DescriptorTable {
public:
	// A client copying this many pairs at once is far beyond what one
	// smbd process does; each pair holds two descriptors.
	static constexpr std::size_t default_capacity = 128;

	explicit DescriptorTable(std::size_t capacity = default_capacity)
		: capacity_(capacity == 0 ? 1 : capacity)
	{
	}

	// Registers (or replaces) `handle`; handle must not be 0.
	void add(std::uint32_t handle, std::shared_ptr<DescriptorPair> pair);
	// The pair, marked most recently used; null when unknown.
	std::shared_ptr<DescriptorPair> find(std::uint32_t handle);
	// True when the handle was known.
	bool remove(std::uint32_t handle);

	[[nodiscard]] std::size_t size() const { return by_handle_.size(); }

private:
	using Lru = std::list<std::pair<std::uint32_t, std::shared_ptr<DescriptorPair>>>;

	std::size_t capacity_;
	Lru lru_; // most recently used first
	std::unordered_map<std::uint32_t, Lru::iterator> by_handle_;
};

} // namespace copyoffload
