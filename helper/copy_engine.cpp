#include "copy_engine.hpp"

#include "clone_backend.hpp"
#include "copy_file_range_backend.hpp"
#include "read_write_backend.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <stdexcept>

namespace copyoffload {

namespace {

std::vector<std::unique_ptr<CopyBackend>> real_backends()
{
	std::vector<std::unique_ptr<CopyBackend>> backends;
	backends.push_back(std::make_unique<CloneBackend>());
	backends.push_back(std::make_unique<CopyFileRangeBackend>());
	backends.push_back(std::make_unique<ReadWriteBackend>());
	return backends;
}

SliceSizes with_defaults(SliceSizes slices)
{
	const SliceSizes defaults;
	if (slices.copy == 0) {
		slices.copy = defaults.copy;
	}
	if (slices.clone == 0) {
		slices.clone = defaults.clone;
	}
	return slices;
}

std::size_t method_index(const CopyPlan &plan, copyoffload_method method)
{
	auto found = std::find(plan.methods.begin(), plan.methods.end(), method);
	if (found == plan.methods.end()) {
		throw std::logic_error("copy segment starts with a method the plan does not allow");
	}
	return static_cast<std::size_t>(found - plan.methods.begin());
}

// The segments must tile [0, length) in order: the reply counts one
// contiguous prefix.
void check_segments(const CopyPlan &plan, std::uint64_t length)
{
	std::uint64_t covered = 0;
	for (const CopySegment &segment : plan.segments) {
		if (segment.offset != covered || segment.length > length - covered) {
			throw std::logic_error("copy segments do not tile the range");
		}
		covered += segment.length;
	}
	if (covered != length) {
		throw std::logic_error("copy segments do not cover the range");
	}
}

std::uint64_t elapsed_usec(std::chrono::steady_clock::time_point since)
{
	return static_cast<std::uint64_t>(
		std::chrono::duration_cast<std::chrono::microseconds>(
			std::chrono::steady_clock::now() - since)
			.count());
}

} // namespace

SliceSizes slices_for_segment(std::uint64_t segment)
{
	return SliceSizes{.copy = segment, .clone = segment};
}

CopyEngine::CopyEngine(SliceSizes slices, EngineHooks hooks)
	: CopyEngine(real_backends(), slices, std::move(hooks))
{
}

CopyEngine::CopyEngine(std::vector<std::unique_ptr<CopyBackend>> backends,
		       SliceSizes slices, EngineHooks hooks)
	: backends_(std::move(backends)), slices_(with_defaults(slices)),
	  hooks_(std::move(hooks))
{
}

CopyBackend &CopyEngine::backend_for(copyoffload_method method)
{
	for (auto &backend : backends_) {
		if (backend->method() == method) {
			return *backend;
		}
	}
	throw std::logic_error("copy planned with a method that has no backend");
}

std::uint64_t CopyEngine::slice_limit(copyoffload_method method,
				      std::uint64_t block_size) const
{
	if (method != COPYOFFLOAD_METHOD_CLONE) {
		return slices_.copy;
	}
	// Clone segments start block-aligned; whole-block slices keep every
	// later slice aligned too.
	block_size = std::max<std::uint64_t>(block_size, 1);
	return std::max(block_size, slices_.clone - slices_.clone % block_size);
}

CopyResult CopyEngine::copy(const CopyRange &range, const CopyPlan &plan,
			    std::stop_token stop)
{
	if (plan.error != 0 || plan.methods.empty()) {
		return CopyResult::failed(plan.error != 0 ? plan.error : EOPNOTSUPP);
	}
	check_segments(plan, range.length);

	CopyResult result;
	for (const CopySegment &segment : plan.segments) {
		result.status = copy_segment(range, plan, segment, stop, result);
		if (result.status != 0) {
			break;
		}
	}
	return result;
}

int CopyEngine::copy_segment(const CopyRange &range, const CopyPlan &plan,
			     const CopySegment &segment, const std::stop_token &stop,
			     CopyResult &result)
{
	std::size_t current = method_index(plan, segment.first);
	std::uint64_t done = 0;            // of this segment
	std::uint64_t done_by_current = 0; // of this segment, by the current method
	while (done < segment.length) {
		if (stop.stop_requested()) {
			return ECANCELED;
		}
		CopyBackend &backend = backend_for(plan.methods[current]);
		const std::uint64_t offset = segment.offset + done;
		CopyRange slice{
			.source = range.source,
			.destination = range.destination,
			.source_offset = range.source_offset + offset,
			.destination_offset = range.destination_offset + offset,
			.length = std::min(slice_limit(backend.method(), plan.block_size),
					   segment.length - done),
		};
		if (backend.method() != COPYOFFLOAD_METHOD_CLONE && hooks_.pace &&
		    !hooks_.pace(slice.length, stop)) {
			return ECANCELED;
		}
		const auto started = std::chrono::steady_clock::now();
		BackendProgress progress = backend.copy_slice(slice);
		result.usec_by_method.at(backend.method()) += elapsed_usec(started);
		const std::uint64_t moved = std::min(progress.bytes, slice.length);
		result.credit(backend.method(), moved);
		done += moved;
		done_by_current += moved;
		if (moved > 0 && hooks_.progress) {
			hooks_.progress(result.bytes_done);
		}
		if (progress.error == 0 && moved == slice.length) {
			continue;
		}
		// A backend that stops short without saying why would make
		// this loop spin; treat it as an I/O error.
		const int error = progress.error != 0 ? progress.error : EIO;
		// Only a method that has not moved a byte of this segment may
		// hand the rest of it over: the reply promises one contiguous
		// prefix, and a failure after progress is a real error (ENOSPC,
		// EIO, ...). A clone is the exception: each slice is one ioctl,
		// all or nothing, so a refused slice left nothing half done.
		const bool may_hand_over =
			moved == 0 && backend.is_unsupported(error) &&
			(done_by_current == 0 || backend.method() == COPYOFFLOAD_METHOD_CLONE);
		if (may_hand_over && current + 1 < plan.methods.size()) {
			current++;
			done_by_current = 0;
			continue;
		}
		result.failed_method = backend.method();
		return error;
	}
	return 0;
}

} // namespace copyoffload
