/* Entry points of the subcommands, dispatched from ambient.c. */
#ifndef AMBIENT_CMD_H
#define AMBIENT_CMD_H

/* Each returns the process exit status: 0 ok, 1 failure, 2 usage error. */
int cmd_ztunnel(int argc, char **argv);
int cmd_waypoint(int argc, char **argv);
int cmd_cni(int argc, char **argv);
int cmd_ca(int argc, char **argv);
int cmd_ctl(int argc, char **argv);

#endif
