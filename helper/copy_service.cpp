#include "copy_service.hpp"

#include "device_copy.hpp"
#include "preallocation.hpp"

#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <optional>

namespace copyoffload {

namespace {

// The kernel answers EINVAL for a clone past the source's EOF; say ENODATA
// there, as every other copy does.
bool source_ends_early(const copyoffload_copy_request &request, int source)
{
	struct stat src{};
	return ::fstat(source, &src) == 0 &&
	       static_cast<std::uint64_t>(src.st_size) < request.src_offset + request.length;
}

// A clone-only copy is cut into pieces that run on their own, so a range
// the kernel refuses as a whole must be refused before any piece clones:
// else the first pieces would replace destination blocks and the request
// still fail (EINVAL), as if nothing had changed. The kernel's rules
// (generic_remap_checks, generic_remap_check_len): both offsets aligned to
// the filesystem's block; the length too, unless it ends at the source's
// EOF and the destination's range reaches the destination's EOF.
std::optional<DescriptorRejection> refuse_clone_range(const copyoffload_copy_request &request,
						      const DescriptorPair &pair,
						      std::uint64_t source_size)
{
	if (request.src_offset > source_size || request.length > source_size - request.src_offset) {
		return DescriptorRejection{ENODATA, "clone range past the source's end"};
	}
	struct statfs fs{};
	struct stat dst{};
	if (::fstatfs(pair.destination(), &fs) != 0 || ::fstat(pair.destination(), &dst) != 0) {
		return DescriptorRejection{errno, "descriptors cannot be inspected"};
	}
	const auto block = static_cast<std::uint64_t>(fs.f_bsize > 0 ? fs.f_bsize : 1);
	if (request.src_offset % block != 0 || request.dst_offset % block != 0) {
		return DescriptorRejection{EINVAL, "clone offsets not block-aligned"};
	}
	const bool to_source_eof = request.src_offset + request.length == source_size;
	const bool past_destination_eof =
		request.dst_offset + request.length >= static_cast<std::uint64_t>(dst.st_size);
	if (request.length % block != 0 && !(to_source_eof && past_destination_eof)) {
		return DescriptorRejection{EINVAL, "clone length not block-aligned"};
	}
	return std::nullopt;
}

// Whether the plan may move data (not only clone or offload to a device).
bool writes_data(const CopyPlan &plan)
{
	return std::any_of(plan.methods.begin(), plan.methods.end(), [](copyoffload_method m) {
		return m == COPYOFFLOAD_METHOD_COPY_FILE_RANGE || m == COPYOFFLOAD_METHOD_READ_WRITE;
	});
}

} // namespace

CopyRange request_range(const copyoffload_copy_request &request, const DescriptorPair &pair)
{
	return {.source = pair.source(),
		.destination = pair.destination(),
		.source_offset = request.src_offset,
		.destination_offset = request.dst_offset,
		.length = request.length};
}

std::variant<PreparedCopy, CopyOutcome> prepare_copy(const copyoffload_copy_request &request,
						    DescriptorPair &pair,
						    const CopySettings &settings)
{
	const auto &checked = pair.check();
	if (const auto *rejection = std::get_if<DescriptorRejection>(&checked)) {
		return CopyOutcome{CopyResult::failed(rejection->status), rejection->reason};
	}
	const PairIdentity &identity = std::get<PairIdentity>(checked);
	if (auto rejection = check_copy_range(identity, request)) {
		return CopyOutcome{CopyResult::failed(rejection->status), rejection->reason};
	}
	if (identity.block_devices) {
		return prepare_device_copy(request, pair, identity, settings);
	}
	const bool clone_only = (request.flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0;
	const CopyPlan methods = plan_methods(request.methods, request.flags, settings.order);
	if (methods.error != 0) {
		return CopyOutcome{CopyResult::failed(methods.error),
				   clone_only ? "clone-only copy without the clone method"
					      : "no allowed method is implemented"};
	}
	if (request.length == 0) {
		return CopyOutcome{};
	}
	std::uint32_t mask = request.methods;
	if (!clone_only) {
		const std::uint32_t usable = mask & ~pair.refusals().mask();
		if (plan_methods(usable, request.flags, settings.order).error == 0) {
			mask = usable;
		}
	}
	CopyGeometry geometry{
		.source_offset = request.src_offset,
		.destination_offset = request.dst_offset,
		.length = request.length,
		.block_size = identity.destination_block_size,
	};
	// Only a clone-first plan looks at the source's size (a tail that
	// ends at its EOF is cloned too): a copy of a pair that cannot clone
	// needs no fstat.
	if (plan_methods(mask, request.flags, settings.order).methods.front() ==
	    COPYOFFLOAD_METHOD_CLONE) {
		struct stat src{};
		if (::fstat(pair.source(), &src) != 0) {
			return CopyOutcome{CopyResult::failed(errno),
					   "descriptors cannot be inspected"};
		}
		geometry.source_size = static_cast<std::uint64_t>(src.st_size > 0 ? src.st_size : 0);
		if (clone_only) {
			if (auto refusal = refuse_clone_range(request, pair, geometry.source_size)) {
				return CopyOutcome{CopyResult::failed(refusal->status),
						   refusal->reason};
			}
		}
	}
	PreparedCopy prepared{
		.range = request_range(request, pair),
		.plan = plan_copy(mask, request.flags, geometry, settings.order),
	};
	prepared.preallocate = settings.preallocate && identity.destination_preallocates &&
			       !clone_only && writes_data(prepared.plan);
	return prepared;
}

void preallocate_first(const PreparedCopy &copy)
{
	if (copy.preallocate) {
		RealSparseFiles sparse;
		preallocate_destination(copy.range, sparse);
	}
}

void settle_trailing_hole(std::uint64_t destination_offset, int destination,
			  SparseFiles &sparse, CopyResult &result)
{
	if (result.trailing_hole == 0 || result.bytes_done == 0) {
		return;
	}
	std::uint64_t size = 0;
	const int error = sparse.extend_to(destination, destination_offset + result.bytes_done,
					   size);
	if (error == 0) {
		return;
	}
	const std::uint64_t kept =
		size > destination_offset ? std::min(size - destination_offset, result.bytes_done) : 0;
	// The bytes taken back were zeros counted for some data method;
	// which one does not matter, only that the sum stays bytes_done.
	std::uint64_t excess = result.bytes_done - kept;
	for (auto method = result.bytes_by_method.size(); method-- > 0 && excess > 0;) {
		const std::uint64_t taken = std::min(excess, result.bytes_by_method[method]);
		result.bytes_by_method[method] -= taken;
		excess -= taken;
	}
	// A shorter prefix takes the extend's error even over an earlier one:
	// that one (ENODATA at the source's end, say) described where the
	// prefix used to end, not where it ends now.
	if (result.status == 0 || kept < result.bytes_done) {
		result.status = error;
		result.failed_method.reset(); // no copy method failed
	}
	result.bytes_done = kept;
	result.trailing_hole = 0;
}

void finish_copy(const copyoffload_copy_request &request, const DescriptorPair &pair,
		 CopyResult &result)
{
	if ((request.flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0 && result.status == EINVAL &&
	    source_ends_early(request, pair.source())) {
		result.status = ENODATA;
	}
	RealSparseFiles sparse;
	settle_trailing_hole(request.dst_offset, pair.destination(), sparse, result);
}

CopyOutcome execute_copy(const copyoffload_copy_request &request, DescriptorPair &pair,
			 std::stop_token stop, const CopySettings &settings)
{
	auto prepared = prepare_copy(request, pair, settings);
	if (auto *outcome = std::get_if<CopyOutcome>(&prepared)) {
		return *outcome;
	}
	const PreparedCopy &copy = std::get<PreparedCopy>(prepared);
	preallocate_first(copy);
	CopyEngine engine;
	CopyResult result = engine.copy(copy.range, copy.plan, std::move(stop), settings.slices,
					settings.hooks, &pair.refusals());
	finish_copy(request, pair, result);
	return {result, {}};
}

CopyOutcome execute_copy(const copyoffload_copy_request &request, int source,
			 int destination, std::stop_token stop, const CopySettings &settings)
{
	DescriptorPair pair(source, destination, DescriptorPair::Borrowed{});
	return execute_copy(request, pair, std::move(stop), settings);
}

} // namespace copyoffload
