#include "descriptor_pair.hpp"

namespace copyoffload {

DescriptorPair::DescriptorPair(UniqueFd source, UniqueFd destination)
	: source_(std::move(source)), destination_(std::move(destination)),
	  check_(DescriptorRejection{EBADF, "not checked"})
{
}

DescriptorPair::DescriptorPair(int source, int destination, Borrowed)
	: DescriptorPair(UniqueFd(source), UniqueFd(destination))
{
	borrowed_ = true;
}

DescriptorPair::~DescriptorPair()
{
	if (borrowed_) {
		(void)source_.release();
		(void)destination_.release();
	}
}

const std::variant<PairIdentity, DescriptorRejection> &DescriptorPair::check()
{
	std::call_once(checked_, [this] {
		check_ = check_descriptor_pair(source_.get(), destination_.get());
		checked_done_.store(true, std::memory_order_release);
	});
	return check_;
}

} // namespace copyoffload
