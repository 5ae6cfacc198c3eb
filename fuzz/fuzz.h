/* SPDX-License-Identifier: MIT */
/* The entry points libFuzzer (or fuzz/run-corpus.c) calls. */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
