/*
 * copyoffload: large btrfs sources known to be clean, shared by every smbd.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 *
 * A look at a cached 256 MiB source costs 2.2-2.4 ms (inline_clone.h), and
 * every client connection is an smbd process of its own, so a verdict kept
 * per process was paid again by each connection that copied the file.
 *
 * tdb directly, not dbwrap: dbwrap's lock order would make smbd panic if
 * this were locked while smbd holds a database of the same order; here
 * each call takes and drops one chain lock and holds nothing else.
 */

#include "includes.h"
#include <tdb.h>
#include "clean_sources.h"

#undef DBGC_CLASS
#define DBGC_CLASS DBGC_VFS

#define CLEAN_SOURCES_FILE "copyoffload_clean_sources.tdb"
#define CLEAN_SOURCE_SLOTS 4096
#define CLEAN_SOURCES_HASH_SIZE 4099 /* short chains when every slot is used */
#define CLEAN_SOURCES_RETRY_SECONDS 60

struct clean_source {
	uint64_t dev;
	uint64_t ino;
	int64_t ctime_sec;
	int64_t ctime_nsec;
};

/* A record: the file, and how far from its start looks found it clean. */
struct clean_source_record {
	struct clean_source file;
	uint64_t clean_up_to;
};

static struct tdb_context *clean_sources_db;
static time_t clean_sources_failed_at; /* 0: the last open did not fail */

static struct tdb_context *clean_sources(void)
{
	char *path = NULL;
	time_t now = time(NULL);
	int err;

	if (clean_sources_db != NULL) {
		return clean_sources_db;
	}
	/* Not once per chunk, but a failure such as EMFILE may pass. */
	if (clean_sources_failed_at != 0 &&
	    now - clean_sources_failed_at < CLEAN_SOURCES_RETRY_SECONDS) {
		return NULL;
	}
	path = cache_path(talloc_tos(), CLEAN_SOURCES_FILE);
	if (path == NULL) {
		clean_sources_failed_at = now;
		return NULL;
	}
	/*
	 * Root's file, opened as root: smbd runs as the user by now, and
	 * locks and writes need only the descriptor. Not cleared when the
	 * last smbd closes it (TDB_CLEAR_IF_FIRST), since each connection's
	 * process exits with it: a verdict stays true for as long as the
	 * file keeps its ctime, restarts and reboots included, and the file
	 * can be removed at any time.
	 */
	become_root();
	clean_sources_db = tdb_open(path, CLEAN_SOURCES_HASH_SIZE,
				    TDB_NOSYNC | TDB_INCOMPATIBLE_HASH,
				    O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	err = errno;
	unbecome_root();
	if (clean_sources_db == NULL) {
		DBG_WARNING("copyoffload: cannot open %s (%s): btrfs sources "
			    "over 16 MiB go to the helper, for %d s\n",
			    path, strerror(err), CLEAN_SOURCES_RETRY_SECONDS);
		clean_sources_failed_at = now;
	} else {
		clean_sources_failed_at = 0;
	}
	TALLOC_FREE(path);
	return clean_sources_db;
}

/*
 * Nothing here is worth keeping through damage (smbd killed in the middle
 * of a store): a wiped file only means looks again.
 */
static void clean_sources_check(struct tdb_context *db)
{
	if (tdb_error(db) == TDB_ERR_CORRUPT) {
		DBG_WARNING("copyoffload: %s is damaged: emptied\n",
			    tdb_name(db));
		tdb_wipe_all(db);
	}
}

static struct clean_source clean_source_of(const struct stat *st)
{
	return (struct clean_source){
		.dev = st->st_dev,
		.ino = st->st_ino,
		.ctime_sec = st->st_ctim.tv_sec,
		.ctime_nsec = st->st_ctim.tv_nsec,
	};
}

static uint32_t clean_source_slot(const struct clean_source *c)
{
	/* Fibonacci hashing of the inode number, mixed with the device. */
	uint64_t h = (c->ino ^ (c->dev << 32 | c->dev >> 32)) *
		     UINT64_C(0x9E3779B97F4A7C15);

	return (uint32_t)(h >> 32) % CLEAN_SOURCE_SLOTS;
}

struct clean_source_lookup {
	struct clean_source wanted;
	uint64_t clean_up_to;
};

static int clean_source_read(TDB_DATA key, TDB_DATA data, void *private_data)
{
	struct clean_source_lookup *lookup = private_data;
	struct clean_source_record record;

	if (data.dsize != sizeof(record)) {
		return 0;
	}
	memcpy(&record, data.dptr, sizeof(record));
	if (memcmp(&record.file, &lookup->wanted, sizeof(record.file)) == 0) {
		lookup->clean_up_to = record.clean_up_to;
	}
	return 0;
}

bool copyoffload_clean_sources_available(void)
{
	return clean_sources() != NULL;
}

uint64_t copyoffload_clean_source_progress(const struct stat *st)
{
	struct tdb_context *db = clean_sources();
	struct clean_source_lookup lookup = {
		.wanted = clean_source_of(st),
	};
	uint32_t slot = clean_source_slot(&lookup.wanted);

	if (db == NULL) {
		return 0;
	}
	if (tdb_parse_record(db,
			     (TDB_DATA){ .dptr = (uint8_t *)&slot,
					 .dsize = sizeof(slot) },
			     clean_source_read, &lookup) != 0) {
		clean_sources_check(db);
		return 0; /* an empty slot, or none to trust */
	}
	if (lookup.clean_up_to >= (uint64_t)st->st_size) {
		DBG_DEBUG("copyoffload: source %ju:%ju known clean\n",
			  (uintmax_t)st->st_dev, (uintmax_t)st->st_ino);
	}
	return lookup.clean_up_to;
}

void copyoffload_clean_source_remember(const struct stat *st,
				       uint64_t clean_up_to)
{
	struct tdb_context *db = clean_sources();
	struct clean_source_record record = {
		.file = clean_source_of(st),
		.clean_up_to = clean_up_to,
	};
	uint32_t slot = clean_source_slot(&record.file);

	if (db == NULL) {
		return;
	}
	if (tdb_store(db, (TDB_DATA){ .dptr = (uint8_t *)&slot,
				      .dsize = sizeof(slot) },
		      (TDB_DATA){ .dptr = (uint8_t *)&record,
				  .dsize = sizeof(record) },
		      TDB_REPLACE) != 0) {
		DBG_DEBUG("copyoffload: cannot keep a clean verdict: %s\n",
			  tdb_errorstr(db));
		clean_sources_check(db);
		return;
	}
	if (clean_up_to >= (uint64_t)st->st_size) {
		DBG_DEBUG("copyoffload: source %ju:%ju found clean as a whole, "
			  "remembered\n",
			  (uintmax_t)st->st_dev, (uintmax_t)st->st_ino);
	} else {
		DBG_DEBUG("copyoffload: source %ju:%ju clean up to %ju of "
			  "%ju bytes, remembered\n",
			  (uintmax_t)st->st_dev, (uintmax_t)st->st_ino,
			  (uintmax_t)clean_up_to, (uintmax_t)st->st_size);
	}
}
