#include "termination_signals.hpp"

#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace copyoffload {

UniqueFd open_termination_signalfd()
{
	sigset_t signals;
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	if (int error = pthread_sigmask(SIG_BLOCK, &signals, nullptr); error != 0) {
		throw std::system_error(error, std::generic_category(), "pthread_sigmask");
	}
	::signal(SIGPIPE, SIG_IGN);
	::signal(SIGXFSZ, SIG_IGN);

	UniqueFd fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
	if (!fd) {
		throw std::system_error(errno, std::generic_category(), "signalfd");
	}
	return fd;
}

std::string read_termination_signal(int signal_fd)
{
	signalfd_siginfo info{};
	ssize_t n;
	do {
		n = ::read(signal_fd, &info, sizeof(info));
	} while (n < 0 && errno == EINTR);
	if (n != static_cast<ssize_t>(sizeof(info))) {
		return {};
	}
	const char *abbreviation = sigabbrev_np(static_cast<int>(info.ssi_signo));
	return abbreviation != nullptr ? std::string("SIG") + abbreviation
				       : std::to_string(info.ssi_signo);
}

} // namespace copyoffload
