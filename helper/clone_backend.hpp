#pragma once

#include "copy_backend.hpp"

namespace copyoffload {

// FICLONERANGE: the destination range shares the source's extents (reflink
// on XFS, btrfs, OCFS2, NFS 4.2, ...). Only metadata changes, so a slice may
// be large. The kernel clones whole blocks only: both offsets must be
// block-aligned, and so must the length unless the range ends at the
// source's EOF (and then the destination range must reach the
// destination's EOF). Everything else, a range past the source's EOF
// included, is refused with EINVAL, which the engine treats as "copy this
// instead": the copy methods then report ENODATA at the source's EOF.
// Each ioctl is all or nothing.
class CloneBackend final : public CopyBackend {
public:
	[[nodiscard]] copyoffload_method method() const override
	{
		return COPYOFFLOAD_METHOD_CLONE;
	}
	BackendProgress copy_slice(const CopyRange &slice) override;
	[[nodiscard]] bool is_unsupported(int error) const override;
	[[nodiscard]] bool refuses_files(int error) const override;
};

} // namespace copyoffload
