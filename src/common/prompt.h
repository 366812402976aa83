/*
 * src/common - reading a password: one line from a file or a pipe, or
 * from a terminal with echo off.
 *
 * Bytes are read one at a time with read(2), so no stdio buffer keeps a
 * copy of the password; the caller passes a secret pst_buf (wiped on
 * growth and clear), whose ceiling is the longest password taken.
 */
#ifndef COMMON_PROMPT_H
#define COMMON_PROMPT_H

#include <postern/buf.h>

/*
 * Read one line from fd and append it to out, without its line end ("\n",
 * or "\r\n").  End of input ends the line too.
 * Parameters: out [out] borrowed for the call; on failure it may hold
 * part of the line (a secret buffer wipes it).
 * Returns: 0, PST_ENOENT (end of input before any byte), PST_ELIMIT (the
 * line passes out's ceiling), PST_EIO (read error: errno says which),
 * PST_ENOMEM.
 */
int prompt_read_line(int fd, struct pst_buf *out);

/*
 * Ask for a password on the terminal tty_fd without echo: echo goes off
 * before prompt is written to prompt_fd (nothing typed once the prompt
 * shows is echoed; TCSAFLUSH drops what was typed ahead), one line is
 * read as prompt_read_line() reads it, and the terminal gets its settings
 * back, also when SIGINT, SIGTERM, SIGHUP or SIGQUIT arrives meanwhile:
 * the handler restores them, then the signal takes its default course.
 * The terminal itself echoes the line end (ECHONL), so what follows
 * starts on a line of its own.  One prompt at a time per process.
 * Parameters: prompt [in] borrowed C string; out as prompt_read_line().
 * Returns: as prompt_read_line(), and PST_ENOTSUP (tty_fd is not a
 * terminal), PST_EIO also when echo cannot be turned off (then nothing
 * is read).
 */
int prompt_password(int tty_fd, int prompt_fd, const char *prompt,
                    struct pst_buf *out);

#endif
