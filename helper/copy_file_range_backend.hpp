#pragma once

#include "copy_backend.hpp"

namespace copyoffload {

// copy_file_range(2): lets the filesystem share or copy extents in the
// kernel (reflink on btrfs/XFS, server-side copy on NFS).
class CopyFileRangeBackend final : public CopyBackend {
public:
	[[nodiscard]] copyoffload_method method() const override
	{
		return COPYOFFLOAD_METHOD_COPY_FILE_RANGE;
	}
	BackendProgress copy_slice(const CopyRange &slice) override;
	[[nodiscard]] bool is_unsupported(int error) const override;
	[[nodiscard]] bool refuses_files(int error) const override;
};

} // namespace copyoffload
