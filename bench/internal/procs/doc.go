// Package procs starts and stops the processes a benchmark program runs
// beside itself (a gateway, a proxy, a tracer, a runtime), so that none of
// them outlives the program.
//
// Start runs a program in its own process group, with its output in a log
// file; on Linux the kernel also kills it when the program that started it
// dies. Stop ends the whole group: SIGTERM first, SIGKILL after a grace.
// LogTail quotes the end of the log for error messages, and FreeAddrs finds
// loopback addresses to give a child to listen on.
//
// It never decides what to run, when a child is ready, or what its failure
// means: those are the calling program's. It works on Unix only (process
// groups and signals), as the benchmark programs do. It exports no
// metrics.
package procs
