#pragma once

#include "copy_backend.hpp"

#include <cstddef>
#include <memory>

namespace copyoffload {

// Plain pread/pwrite through a user-space buffer: works for any pair of
// regular files, the fallback of last resort.
class ReadWriteBackend final : public CopyBackend {
public:
	static constexpr std::size_t buffer_size = std::size_t{1} << 20;

	[[nodiscard]] copyoffload_method method() const override
	{
		return COPYOFFLOAD_METHOD_READ_WRITE;
	}
	BackendProgress copy_slice(const CopyRange &slice) override;
	[[nodiscard]] bool is_unsupported(int) const override { return false; }

private:
	// Allocated on first use: most copies never fall back this far.
	std::unique_ptr<std::byte[]> buffer_;
};

} // namespace copyoffload
