// The progress line `copyoffload copy` draws on a terminal: bar, percentage,
// bytes and rate, redrawn in place with a carriage return.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace copyoffload::cli {

// "[###########---------]  55%  55.0 MiB / 100.0 MiB  27.5 MiB/s"
std::string render_progress(std::uint64_t done, std::uint64_t total, double seconds,
			    std::size_t bar_width = 30);

class ProgressBar {
public:
	using Clock = std::chrono::steady_clock;

	ProgressBar(std::FILE *out, std::uint64_t total,
		    Clock::duration interval = std::chrono::milliseconds(100));

	// Redraws at most once per interval.
	void update(std::uint64_t done);
	// Draws the final state and ends the line.
	void finish(std::uint64_t done);

private:
	void draw(std::uint64_t done);

	std::FILE *out_;
	std::uint64_t total_;
	Clock::duration interval_;
	Clock::time_point started_ = Clock::now();
	Clock::time_point last_draw_{};
};

} // namespace copyoffload::cli
