/* `ambient ca serve`, the HTTPS certificate authority and mesh-config server. */
#ifndef AMBIENT_CMD_CA_H
#define AMBIENT_CMD_CA_H

int ca_serve_main(int argc, char **argv);

#endif
