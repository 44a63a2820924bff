/* Masking of the variable parts of an error message (architecture §7), the first step of a failure
 * signature: hand-written scanners, no regex engine, no allocation, deterministic.
 *
 * The text is scanned left to right. At the start of each word (the first byte, or a byte
 * after one that is not a word byte [A-Za-z0-9_] or >= 0x80) the kinds are tried in the
 * order and the first that matches a whole token wins:
 *
 *   <EMAIL>  local@host.tld
 *   <URL>    scheme://... up to whitespace, a quote or <>, minus trailing punctuation
 *   <HOST>   dotted hostname whose last label is a known top-level domain, optional :port;
 *            with a :port, any dotted lowercase name that is no file name (not Foo.java:42)
 *   <IP>     IPv4 (with optional :port), IPv6 (full or ::-compressed, optional [..]:port)
 *   <UUID>   8-4-4-4-12 hex
 *   <HASH>   a hex run of exactly 32, 40 or 64 digits
 *   <TS>     ISO 8601 dates/times, BGL "2005-06-03-15.42.50.363779", syslog
 *            "[Www ]Jun 14 15:16:01[ 2005]", times hh:mm[:ss[.fff]]
 *   <DUR>    a number with a unit: 250ms, 1.5s, 3m, 1h30m (ns us µs ms s sec m min h d ...)
 *   <HEX>    0x..., a run of 8+ hex digits holding both a digit and a letter, or a MAC
 *            address (tried right after hashes: dates and durations would take its groups)
 *   <NUM>    floats (1.5, -2e-3), version-like dotted numbers (1.2.3) and integers (-42)
 *   <STR>    a quoted value right after '=': key="..." or key='...' (backslash escapes)
 *
 * Because the URL starts before anything inside it, a URL holding an IP, a port and numbers
 * becomes one <URL>; likewise key="..." becomes key=<STR> whatever it holds. A token glued
 * inside a word ("blk_123", "python3") or after a dot inside a dotted word ("v1.2",
 * "invoke.434") is left alone: the template step decides about such words; '-' and other
 * punctuation do split ("node-12" gives "node-<NUM>"). Bytes >= 0x80 count as word bytes so
 * UTF-8 letters never split a word. Scanners are bounded, so the cost is linear in the input.
 */
#ifndef PL_MASK_H
#define PL_MASK_H

#include <stddef.h>

/**
 * @brief Masks the NUL-terminated text in into out (outsz bytes; the caller owns both).
 *        out is always NUL-terminated when outsz > 0; when it is too small the text is cut
 *        there, never inside a placeholder. @returns the length of the whole masked text
 *        (like snprintf: a value >= outsz means out was truncated). The output is at most 5x
 *        the input (a lone digit becomes "<NUM>"): outsz = 5 * strlen(in) + 1 never truncates.
 */
size_t pl_mask_text(const char *in, char *out, size_t outsz);

/**
 * @brief Same as pl_mask_text for len bytes that may hold NULs (each written as a space).
 */
size_t pl_mask_textn(const char *in, size_t len, char *out, size_t outsz);

/**
 * @brief @returns the length of the placeholder ("<NUM>", "<IP>", ...) that s starts with,
 *        or 0 when s does not start with one.
 */
size_t pl_mask_placeholder_len(const char *s);

#endif
