#include "descriptor_table.hpp"

namespace copyoffload {

void DescriptorTable::add(std::uint32_t handle, std::shared_ptr<DescriptorPair> pair)
{
	remove(handle);
	if (by_handle_.size() >= capacity_) {
		by_handle_.erase(lru_.back().first);
		lru_.pop_back();
	}
	lru_.emplace_front(handle, std::move(pair));
	by_handle_.emplace(handle, lru_.begin());
}

std::shared_ptr<DescriptorPair> DescriptorTable::find(std::uint32_t handle)
{
	auto found = by_handle_.find(handle);
	if (found == by_handle_.end()) {
		return nullptr;
	}
	lru_.splice(lru_.begin(), lru_, found->second);
	return found->second->second;
}

bool DescriptorTable::remove(std::uint32_t handle)
{
	auto found = by_handle_.find(handle);
	if (found == by_handle_.end()) {
		return false;
	}
	lru_.erase(found->second);
	by_handle_.erase(found);
	return true;
}

} // namespace copyoffload
