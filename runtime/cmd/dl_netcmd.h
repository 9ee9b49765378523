/*
** dl_netcmd.h -- the dlua command's subcommands for clusters past one
** machine: `dlua worker ADDRESS ...` joins a scheduler over TCP.
*/
#ifndef dl_netcmd_h
#define dl_netcmd_h

/*
** If argv[1] names a subcommand ("worker"), run it and return its exit
** status; else return -1 and touch nothing.
*/
int dl_netcmd_main(int argc, char **argv);

#endif
