/* SPDX-License-Identifier: MIT */
/*
 * The bus's counters as a metrics exposition, for Prometheus: the text format
 * 0.0.4 (what node_exporter's textfile collector reads) or OpenMetrics 1.0.
 * Input is a snapshot with detail (inspect_snapshot()); docs/METRICS.md lists
 * every metric, and changes there and here go together. Metric names follow
 * Prometheus' conventions: a shmbus_ prefix, base units as a suffix
 * (_bytes), counters ending in _total. No timestamps: the scrape's own is
 * right.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

#define METRICS_TYPE_OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"
#define METRICS_TYPE_PROMETHEUS  "text/plain; version=0.0.4; charset=utf-8"

/*
 * metrics_write() - write every metric of @list to @f
 * @list: {"channels": [stat reply, ...]}
 * @offline: the snapshot was read from the files (shmbus_daemon_up is 0)
 * @openmetrics: OpenMetrics (with # UNIT lines and a closing # EOF) instead of
 *   the text format 0.0.4
 *
 * Return: 0, or -EIO if writing to @f failed.
 */
int metrics_write(FILE *f, const cJSON *list, bool offline, bool openmetrics);
