#include "copy_engine.hpp"

#include "copy_file_range_backend.hpp"
#include "read_write_backend.hpp"

#include <algorithm>
#include <cerrno>
#include <stdexcept>

namespace copyoffload {

namespace {

constexpr copyoffload_method implemented_methods[] = {
	COPYOFFLOAD_METHOD_COPY_FILE_RANGE,
	COPYOFFLOAD_METHOD_READ_WRITE,
};

std::vector<std::unique_ptr<CopyBackend>> real_backends()
{
	std::vector<std::unique_ptr<CopyBackend>> backends;
	backends.push_back(std::make_unique<CopyFileRangeBackend>());
	backends.push_back(std::make_unique<ReadWriteBackend>());
	return backends;
}

} // namespace

CopyPlan plan_copy(std::uint32_t methods_mask, std::uint32_t flags)
{
	CopyPlan plan;
	if ((flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0) {
		plan.error = EOPNOTSUPP;
		return plan;
	}
	for (copyoffload_method method : implemented_methods) {
		if ((methods_mask & COPYOFFLOAD_METHOD_BIT(method)) != 0) {
			plan.methods.push_back(method);
		}
	}
	if (plan.methods.empty()) {
		plan.error = EOPNOTSUPP;
	}
	return plan;
}

CopyEngine::CopyEngine(std::uint64_t slice_size)
	: CopyEngine(real_backends(), slice_size)
{
}

CopyEngine::CopyEngine(std::vector<std::unique_ptr<CopyBackend>> backends,
		       std::uint64_t slice_size)
	: backends_(std::move(backends)),
	  slice_size_(slice_size == 0 ? default_slice_size : slice_size)
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

CopyResult CopyEngine::copy(const CopyRange &range, const CopyPlan &plan,
			    std::stop_token stop)
{
	if (plan.error != 0 || plan.methods.empty()) {
		return CopyResult::failed(plan.error != 0 ? plan.error : EOPNOTSUPP);
	}

	CopyResult result;
	std::size_t current = 0;
	while (result.bytes_done < range.length) {
		if (stop.stop_requested()) {
			result.status = ECANCELED;
			break;
		}
		CopyBackend &backend = backend_for(plan.methods[current]);
		CopyRange slice{
			.source = range.source,
			.destination = range.destination,
			.source_offset = range.source_offset + result.bytes_done,
			.destination_offset = range.destination_offset + result.bytes_done,
			.length = std::min(slice_size_, range.length - result.bytes_done),
		};
		BackendProgress progress = backend.copy_slice(slice);
		result.credit(backend.method(), std::min(progress.bytes, slice.length));
		if (progress.error == 0 && progress.bytes == slice.length) {
			continue;
		}
		if (progress.error == 0) {
			// A backend that stops short without saying why would
			// make this loop spin; treat it as an I/O error.
			progress.error = EIO;
		}
		// Only a method that has not moved a byte of this request may
		// hand over: the reply promises one contiguous prefix, and a
		// failure after progress is a real error (ENOSPC, EIO, ...).
		if (result.bytes_done == 0 && backend.is_unsupported(progress.error) &&
		    current + 1 < plan.methods.size()) {
			current++;
			continue;
		}
		result.status = progress.error;
		break;
	}
	return result;
}

} // namespace copyoffload
