/*
 * postern - the subcommands, each with its own option parsing.  Each
 * returns a sysexits.h code.
 */
#ifndef POSTERN_CMDS_H
#define POSTERN_CMDS_H

int cmd_send_main(int argc, char **argv);
int cmd_probe_main(int argc, char **argv);
int cmd_bench_main(int argc, char **argv);
int cmd_queue_main(int argc, char **argv);
int cmd_oauth_main(int argc, char **argv);
int sendmail_main(int argc, char **argv);

#endif
