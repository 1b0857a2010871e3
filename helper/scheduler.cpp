#include "scheduler.hpp"

#include "connection.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>

namespace copyoffload {

namespace {

std::array<StallKey, 2> keys_of(const PairIdentity &pair)
{
	// A block device node's st_dev is devtmpfs's, the same for every disk.
	const bool nodes = pair.block_devices.has_value();
	return {StallKey{pair.source_device, nodes ? pair.source_inode : 0},
		StallKey{pair.destination_device, nodes ? pair.destination_inode : 0}};
}

} // namespace

std::array<StallKey, 2> stall_keys(const CopyTask &task)
{
	const auto &files = task.job().files;
	const auto *pair = files ? std::get_if<PairIdentity>(&files->check()) : nullptr;
	if (pair == nullptr) {
		return {}; // refused, or answered: it runs no more pieces
	}
	return keys_of(*pair);
}

std::array<StallKey, 2> new_copy_stall_keys(const CopyJob &job)
{
	std::array<StallKey, 2> keys{};
	if (!job.files) {
		return keys;
	}
	if (const auto *checked = job.files->checked()) {
		const auto *pair = std::get_if<PairIdentity>(checked);
		return pair != nullptr ? keys_of(*pair) : keys; // refused: no pieces
	}
	const int descriptors[] = {job.files->source(), job.files->destination()};
	for (std::size_t i = 0; i < keys.size(); i++) {
		struct statx attributes{};
		if (::statx(descriptors[i], "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC,
			    STATX_TYPE | STATX_INO, &attributes) != 0) {
			continue;
		}
		// As keys_of(): a block device node by its inode too.
		keys[i] = StallKey{::makedev(attributes.stx_dev_major, attributes.stx_dev_minor),
				   S_ISBLK(attributes.stx_mode) ? attributes.stx_ino : 0};
	}
	return keys;
}

Scheduler::Scheduler(std::size_t workers, WakeWorker wake, std::size_t busy_limit)
	: wake_(std::move(wake)), busy_limit_(busy_limit), idle_(workers, false)
{
}

std::size_t Scheduler::add_worker()
{
	std::lock_guard lock(mutex_);
	idle_.push_back(false);
	return idle_.size() - 1;
}

void Scheduler::remove_last_worker()
{
	std::lock_guard lock(mutex_);
	idle_.pop_back(); // never idle: nobody was told of it
}

void Scheduler::hold(std::size_t worker, std::span<const StallKey> keys)
{
	std::lock_guard lock(mutex_);
	held_.reserve(held_.size() + keys.size()); // no key is lost halfway
	// No key (unknown files) holds nothing.
	std::copy_if(keys.begin(), keys.end(), std::back_inserter(held_),
		     [](const StallKey &key) { return key != StallKey{}; });
	holding_.store(!held_.empty());
	// Stuck after it found no work, it may still be marked idle: it must
	// be neither woken nor counted twice.
	idle_.at(worker) = false;
	stalled_++;
}

void Scheduler::release(std::span<const StallKey> keys)
{
	std::lock_guard lock(mutex_);
	for (const StallKey &key : keys) {
		if (auto at = std::find(held_.begin(), held_.end(), key); at != held_.end()) {
			held_.erase(at);
		}
	}
	holding_.store(!held_.empty());
	stalled_--;
	// The copies held back may have pieces for every idle worker (no
	// index is `self`).
	if (!flows_.empty()) {
		wake_idle(idle_.size(), idle_.size());
	}
}

std::optional<CopyJob> Scheduler::take_unparked()
{
	std::lock_guard lock(mutex_);
	const auto free = std::find_if(parked_.begin(), parked_.end(), [this](const Parked &parked) {
		return !any_held(parked.keys);
	});
	if (free == parked_.end()) {
		return std::nullopt;
	}
	std::optional<CopyJob> job(std::move(free->job));
	parked_.erase(free);
	return job;
}

bool Scheduler::park_if_held(std::span<const StallKey> keys, CopyJob &job)
{
	std::lock_guard lock(mutex_);
	if (!any_held(keys)) {
		return false;
	}
	std::array<StallKey, 2> kept{};
	std::copy_n(keys.begin(), std::min(keys.size(), kept.size()), kept.begin());
	parked_.reserve(parked_.size() + 1); // if this throws, the job is still the caller's
	parked_.push_back(Parked{kept, std::move(job)});
	return true;
}

bool Scheduler::any_held(std::span<const StallKey> keys) const
{
	for (const StallKey &key : keys) {
		if (key != StallKey{} &&
		    std::find(held_.begin(), held_.end(), key) != held_.end()) {
			return true;
		}
	}
	return false;
}

bool Scheduler::held(const CopyTask &task) const
{
	return !held_.empty() && any_held(stall_keys(task));
}

bool Scheduler::admits(const CopyTask &task) const
{
	const auto &share = task.job().share.share;
	return !share || share->concurrency().admits();
}

void Scheduler::leave_share(const CopyTask &task)
{
	const auto &share = task.job().share.share;
	if (task.started() && share) {
		share->concurrency().leave();
	}
}

void Scheduler::wake_idle(std::size_t count, std::size_t self)
{
	for (std::size_t worker = 0; worker < idle_.size() && count > 0; worker++) {
		if (worker != self && idle_[worker]) {
			idle_[worker] = false; // woken once, not again until it idles
			wake_(worker);
			count--;
		}
	}
}

void Scheduler::add(std::shared_ptr<CopyTask> task, std::size_t self)
{
	std::lock_guard lock(mutex_);
	idle_.at(self) = false;
	// Queued pieces go first (turns): the new copy's first piece is then
	// not self's next one, and waits for a worker of its own.
	const bool queue_was_empty = flows_.empty();
	const std::size_t idle = idle_workers();
	// A task that reserves first has one piece to give until then.
	const std::size_t pieces =
		admits(*task) ? task->pieces_left(task->reserving() ? 1 : idle + 1) : 0;
	// If an allocation fails, nothing has changed (the caller drops the
	// task).
	const Connection *connection = task->job().connection.get();
	auto found = by_connection_.find(connection);
	if (found == by_connection_.end()) {
		flows_.push_back(Flow{connection, {}});
		try {
			found = by_connection_.emplace(connection, std::prev(flows_.end())).first;
			found->second->tasks.push_back(std::move(task));
		} catch (...) {
			by_connection_.erase(connection);
			flows_.pop_back();
			throw;
		}
	} else {
		found->second->tasks.push_back(std::move(task));
	}
	tasks_++;
	// `self` takes the first piece itself when nothing else waits. The
	// busy ones (self among them) go on with the rest in turn.
	wake_idle(std::min(room_to_wake(idle), pieces > 0 && queue_was_empty ? pieces - 1 : pieces),
		  self);
}

std::size_t Scheduler::idle_workers() const
{
	return static_cast<std::size_t>(std::count(idle_.begin(), idle_.end(), true));
}

std::size_t Scheduler::room_to_wake(std::size_t idle) const
{
	// Past busy_limit_ an idle worker is woken only for another
	// connection's copy: the limit keeps a CPU for one smbd process, and
	// several of them copying at once use every CPU, as stock's would.
	// A stalled worker uses no CPU.
	const std::size_t busy = idle_.size() - idle - stalled_;
	const std::size_t wanted = std::max(busy_limit_, flows_.size());
	return wanted > busy ? wanted - busy : 0;
}

void Scheduler::reserved(CopyTask &task, std::size_t self)
{
	std::lock_guard lock(mutex_);
	task.reserved();
	const std::size_t idle = idle_workers();
	// `self` is busy with the first piece: the rest is for the others.
	wake_idle(std::min(room_to_wake(idle), task.pieces_left(idle)), self);
}

void Scheduler::remove(std::list<Flow>::iterator flow, std::size_t index)
{
	flow->tasks.erase(flow->tasks.begin() + static_cast<std::ptrdiff_t>(index));
	if (flow->tasks.empty()) {
		by_connection_.erase(flow->connection);
		flows_.erase(flow);
	}
}

bool Scheduler::paced_ready(const CopyTask &task, Clock::time_point now,
			    Clock::time_point &retry)
{
	RateLimiter *rate = task.rate_limiter();
	if (rate == nullptr) {
		return true;
	}
	const Clock::time_point ready = rate->ready_at();
	if (ready <= now) {
		return true;
	}
	if (retry == Clock::time_point{} || ready < retry) {
		retry = ready;
	}
	return false;
}

std::optional<Scheduler::Assignment> Scheduler::take(Clock::time_point now,
						     Clock::time_point &retry,
						     bool idle_tasks_only)
{
	for (auto flow = flows_.begin(); flow != flows_.end();) {
		bool flow_removed = false;
		for (std::size_t i = 0; i < flow->tasks.size();) {
			std::shared_ptr<CopyTask> task = flow->tasks[i];
			if (!task->started() && !admits(*task)) {
				i++; // its share is at its limit: the next one's turn
				continue;
			}
			if ((idle_tasks_only && task->running()) ||
			    (task->reserving() && task->started())) {
				i++; // its first piece still reserves its blocks
				continue;
			}
			// A task whose client went away still comes through, to
			// be completed; one that is only early, or on a filesystem
			// that hangs, waits its turn.
			if (!task->job().connection->cancelled() &&
			    (held(*task) || !paced_ready(*task, now, retry))) {
				i++;
				continue;
			}
			const bool was_started = task->started();
			if (auto piece = task->take_piece()) {
				if (!was_started && task->job().share.share) {
					task->job().share.share->concurrency().enter();
				}
				if (RateLimiter *rate = task->rate_limiter();
				    rate != nullptr && piece->first != COPYOFFLOAD_METHOD_CLONE) {
					rate->reserve(piece->length, now); // starts now: it was ready
				}
				// Turns: the task goes behind its connection's other
				// tasks, the connection behind the others.
				// (Into the room erase() left: push_back cannot throw.)
				flow->tasks.erase(flow->tasks.begin() + static_cast<std::ptrdiff_t>(i));
				if (task->pieces_left(1) > 0) {
					flow->tasks.push_back(task);
				}
				if (flow->tasks.empty()) {
					by_connection_.erase(flow->connection);
					flows_.erase(flow);
				} else {
					flows_.splice(flows_.end(), flows_, flow);
				}
				return Assignment{std::move(task), piece};
			}
			// It takes no more pieces (cut, failed, client gone).
			const bool last_in_flow = flow->tasks.size() == 1;
			auto next_flow = std::next(flow);
			remove(flow, i);
			if (task->complete()) {
				tasks_--;
				leave_share(*task);
				return Assignment{std::move(task), std::nullopt};
			}
			if (last_in_flow) {
				flow = next_flow;
				flow_removed = true;
				break;
			}
		}
		if (!flow_removed) {
			++flow;
		}
	}
	return std::nullopt;
}

std::optional<Scheduler::Assignment> Scheduler::next(std::size_t self,
						     Clock::time_point &retry)
{
	std::lock_guard lock(mutex_);
	idle_.at(self) = false;
	retry = {};
	// Another copy first: two pieces of one destination wait for each
	// other's inode lock on ext4 (4 clients: 170 waits in 256 requests).
	const Clock::time_point now = Clock::now();
	auto assignment = take(now, retry, true);
	if (!assignment) {
		assignment = take(now, retry, false);
	}
	if (!assignment) {
		idle_.at(self) = true;
	}
	return assignment;
}

bool Scheduler::done(const Assignment &assignment, const PieceResult &result)
{
	std::lock_guard lock(mutex_);
	CopyTask &task = *assignment.task;
	task.piece_done(*assignment.piece, result);
	if (!task.complete()) {
		return false;
	}
	if (auto flow = by_connection_.find(task.job().connection.get());
	    flow != by_connection_.end()) {
		auto &tasks = flow->second->tasks;
		auto at = std::find(tasks.begin(), tasks.end(), assignment.task);
		if (at != tasks.end()) {
			remove(flow->second, static_cast<std::size_t>(at - tasks.begin()));
		}
	}
	tasks_--;
	leave_share(task);
	return true;
}

Scheduler::Dropped Scheduler::drop(const Connection &connection)
{
	Dropped dropped;
	std::lock_guard lock(mutex_);
	// Parked copies stay: closing their files would wait for their hung
	// filesystem here. Once it answers they start, see the connection
	// gone and are dropped (Worker::start()).
	auto found = by_connection_.find(&connection);
	if (found == by_connection_.end()) {
		return dropped;
	}
	// Before anything moves: no allocation fails halfway.
	dropped.unstarted.reserve(found->second->tasks.size());
	dropped.finish.reserve(found->second->tasks.size());
	for (std::shared_ptr<CopyTask> &task : found->second->tasks) {
		if (!task->started()) {
			tasks_--;
			dropped.unstarted.push_back(std::move(task));
		} else if (task->complete()) {
			tasks_--;
			leave_share(*task);
			dropped.finish.push_back(std::move(task));
		}
		// Others have pieces running; the last of them completes them.
	}
	flows_.erase(found->second);
	by_connection_.erase(found);
	return dropped;
}

std::size_t Scheduler::tasks() const
{
	std::lock_guard lock(mutex_);
	return tasks_;
}

} // namespace copyoffload
