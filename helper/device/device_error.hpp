// What the device layer returns instead of throwing: a value or an errno
// with a reason for the log. The layer uses neither exceptions nor fmt, so
// the static guest test (selftest/blockdev) compiles it as it is.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <variant>

namespace copyoffload::device {

struct DeviceError {
	int error = 0;      // positive errno
	std::string reason; // for people
};

// How a run of device commands went.
struct CommandsOutcome {
	std::size_t completed = 0; // commands done, in order from the first
	int error = 0;             // of the first command that was not (0: none)
	std::string reason;
};

template <typename T>
class Result {
public:
	Result(T value) : state_(std::move(value)) {}
	Result(DeviceError error) : state_(std::move(error)) {}

	[[nodiscard]] bool ok() const noexcept { return state_.index() == 0; }
	explicit operator bool() const noexcept { return ok(); }

	[[nodiscard]] T &value() { return std::get<0>(state_); }
	[[nodiscard]] const T &value() const { return std::get<0>(state_); }
	T *operator->() { return &value(); }
	const T *operator->() const { return &value(); }
	[[nodiscard]] const DeviceError &error() const { return std::get<1>(state_); }

private:
	std::variant<T, DeviceError> state_;
};

} // namespace copyoffload::device
