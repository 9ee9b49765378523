/*
** dl_netcmd.h -- the dlua command's subcommands for clusters past one
** machine: `dlua worker ADDRESS ...` joins a scheduler over TCP, `dlua
** scheduler` runs one, `dlua run script.lua` is every rank of a job.
*/
#ifndef dl_netcmd_h
#define dl_netcmd_h

/*
** If argv[1] names a subcommand ("worker", "scheduler", "run"), run it
** and return its exit status; else return -1 and touch nothing.
*/
int dl_netcmd_main(int argc, char **argv);

#endif
