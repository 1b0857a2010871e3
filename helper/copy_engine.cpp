#include "copy_engine.hpp"

#include "clone_backend.hpp"
#include "copy_file_range_backend.hpp"
#include "device_backend.hpp"
#include "uring_read_write_backend.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <stdexcept>

namespace copyoffload {

namespace {

std::vector<std::unique_ptr<CopyBackend>> real_backends(const EngineOptions &options)
{
	std::vector<std::unique_ptr<CopyBackend>> backends;
	backends.push_back(std::make_unique<CloneBackend>());
	backends.push_back(std::make_unique<CopyFileRangeBackend>());
	backends.push_back(std::make_unique<UringReadWriteBackend>(options.queue_depth));
	// Finds each request's device session by its descriptors.
	backends.push_back(std::make_unique<device::DeviceBackend>());
	return backends;
}

std::uint64_t elapsed_usec(std::chrono::steady_clock::time_point since)
{
	return static_cast<std::uint64_t>(
		std::chrono::duration_cast<std::chrono::microseconds>(
			std::chrono::steady_clock::now() - since)
			.count());
}

} // namespace

CopyEngine::CopyEngine(EngineOptions options)
	: CopyEngine(real_backends(options), std::make_unique<RealSparseFiles>())
{
}

CopyEngine::CopyEngine(std::vector<std::unique_ptr<CopyBackend>> backends,
		       std::unique_ptr<SparseFiles> sparse)
	: backends_(std::move(backends)),
	  sparse_(sparse ? std::move(sparse) : std::make_unique<DenseFiles>())
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

std::string CopyEngine::prepare()
{
	for (auto &backend : backends_) {
		if (auto *uring = dynamic_cast<UringReadWriteBackend *>(backend.get())) {
			return uring->prepare();
		}
	}
	return "pread/pwrite";
}

bool CopyEngine::copy_hole(const CopyRange &range, std::uint64_t offset, std::uint64_t length,
			   copyoffload_method method, PieceResult &result)
{
	const int error = sparse_->make_hole(range.destination,
					     range.destination_offset + offset, length);
	if (error == EOPNOTSUPP) {
		return false;
	}
	if (error != 0) {
		result.error = error;
		result.failed_method = method;
		return true;
	}
	result.credit_hole(method, length);
	return true;
}

PieceResult CopyEngine::copy_piece(const CopyRange &range, const CopyPlan &plan,
				   const CopyPiece &piece, const PieceContext &context)
{
	static const EngineHooks no_hooks;
	const EngineHooks &hooks = context.hooks != nullptr ? *context.hooks : no_hooks;
	const SliceSizes slices = with_defaults(context.slices);
	auto refused = [&] { return context.refusals ? context.refusals->mask() : 0u; };

	PieceResult result;
	std::size_t current =
		first_usable_method(plan, method_index(plan, piece.first), refused());
	std::uint64_t done_by_current = 0; // of this piece, by the current method
	while (result.bytes < piece.length && result.error == 0) {
		note_progress(); // each slice or hole starts here
		if (context.stop.stop_requested()) {
			result.error = ECANCELED;
			break;
		}
		CopyBackend &backend = backend_for(plan.methods[current]);
		const copyoffload_method method = backend.method();
		const std::uint64_t offset = piece.offset + result.bytes;
		std::uint64_t length = std::min(slice_limit(slices, method, plan.block_size),
						piece.length - result.bytes);
		if (method != COPYOFFLOAD_METHOD_CLONE) {
			// A clone shares holes as they are; the data methods copy
			// only where the source has data.
			const SparseFiles::Region region =
				sparse_->region_at(range.source, range.source_offset + offset, length);
			// A hole moves no data: it does not stop the method from
			// handing the piece over later.
			if (region.hole &&
			    copy_hole(range, offset, region.length, method, result)) {
				continue;
			}
			length = region.length;
			if (hooks.pace && !hooks.pace(length, context.stop)) {
				result.error = ECANCELED;
				break;
			}
		}
		const auto started = std::chrono::steady_clock::now();
		const BackendProgress progress = backend.copy_slice({
			.source = range.source,
			.destination = range.destination,
			.source_offset = range.source_offset + offset,
			.destination_offset = range.destination_offset + offset,
			.length = length,
		});
		result.usec_by_method.at(method) += elapsed_usec(started);
		const std::uint64_t moved = std::min(progress.bytes, length);
		result.credit(method, moved);
		done_by_current += moved;
		if (progress.error == 0 && moved == length) {
			continue;
		}
		// A backend that stops short without saying why would make
		// this loop spin; treat it as an I/O error.
		const int error = progress.error != 0 ? progress.error : EIO;
		// Only a method that has not moved a byte of this piece may
		// hand the rest of it over: the reply promises one contiguous
		// prefix, and a failure after progress is a real error (ENOSPC,
		// EIO, ...). A clone is the exception: each slice is one ioctl,
		// all or nothing, so a refused slice left nothing half done. So is
		// device copy: it counts only the commands that completed, and a
		// command the device refused left nothing half done that counts.
		const bool whole_commands = method == COPYOFFLOAD_METHOD_CLONE ||
					    method == COPYOFFLOAD_METHOD_DEVICE;
		const bool may_hand_over =
			(moved == 0 || whole_commands) && backend.is_unsupported(error) &&
			(done_by_current == 0 || whole_commands);
		if (may_hand_over && context.refusals != nullptr && backend.refuses_files(error)) {
			context.refusals->refuse(method);
		}
		const std::size_t next = may_hand_over && current + 1 < plan.methods.size()
						 ? first_usable_method(plan, current + 1, refused())
						 : current;
		if (next != current) {
			current = next;
			done_by_current = 0;
			continue;
		}
		result.error = error;
		result.failed_method = method;
	}
	return result;
}

CopyResult CopyEngine::copy(const CopyRange &range, const CopyPlan &plan, std::stop_token stop,
			    SliceSizes slices, const EngineHooks &hooks, MethodRefusals *refusals)
{
	if (plan.error != 0 || plan.methods.empty()) {
		return CopyResult::failed(plan.error != 0 ? plan.error : EOPNOTSUPP);
	}
	PieceCursor cursor(plan, range.length, slices);
	MethodRefusals local;
	PieceContext context{
		.slices = slices,
		.hooks = &hooks,
		.stop = stop,
		.refusals = refusals != nullptr ? refusals : &local,
	};
	ProgressTracker tracker(range.length);
	while (auto piece = cursor.next(context.refusals->mask())) {
		if (stop.stop_requested()) {
			tracker.stop_at(piece->offset, ECANCELED);
			break;
		}
		const PieceResult result = copy_piece(range, plan, *piece, context);
		tracker.record(*piece, result);
		if (result.bytes > 0 && hooks.progress) {
			hooks.progress(tracker.bytes_done());
		}
		if (tracker.failed()) {
			break;
		}
	}
	return tracker.result();
}

} // namespace copyoffload
