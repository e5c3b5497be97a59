package transport

import "syscall"

var syscallEMFILE = syscall.EMFILE
