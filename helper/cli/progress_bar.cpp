#include "progress_bar.hpp"

#include "text_format.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace copyoffload::cli {

std::string render_progress(std::uint64_t done, std::uint64_t total, double seconds,
			    std::size_t bar_width)
{
	double fraction = total == 0 ? 1.0 : static_cast<double>(std::min(done, total)) /
						     static_cast<double>(total);
	auto filled = static_cast<std::size_t>(fraction * static_cast<double>(bar_width));
	return fmt::format("[{}{}] {:3.0f}%  {} / {}  {}", std::string(filled, '#'),
			   std::string(bar_width - filled, '-'), fraction * 100,
			   human_bytes(static_cast<double>(done)),
			   human_bytes(static_cast<double>(total)),
			   human_rate(static_cast<double>(done), seconds));
}

ProgressBar::ProgressBar(std::FILE *out, std::uint64_t total, Clock::duration interval)
	: out_(out), total_(total), interval_(interval)
{
}

void ProgressBar::draw(std::uint64_t done)
{
	last_draw_ = Clock::now();
	double seconds = std::chrono::duration<double>(last_draw_ - started_).count();
	// "\r" back to the line's start, "\x1b[K" clears what a longer
	// previous line left behind.
	fmt::print(out_, "\r{}\x1b[K", render_progress(done, total_, seconds));
	std::fflush(out_);
}

void ProgressBar::update(std::uint64_t done)
{
	if (Clock::now() - last_draw_ >= interval_) {
		draw(done);
	}
}

void ProgressBar::finish(std::uint64_t done)
{
	draw(done);
	fmt::print(out_, "\n");
	std::fflush(out_);
}

} // namespace copyoffload::cli
