"""``cconv train --distributed``: the processes ``mpiexec`` started, and how they end together.

:func:`start` joins MPI (``mpi4py``), and gives each rank its share of the
machine's cores. :meth:`World.finish` ends a rank's command after an error.
An error every rank met at the same point (marked so by
:func:`cconv.distributed.mark_raised_on_every_rank`: a diverged loss, seen by
all in the summed loss; a failure of rank 0's file work, which it tells the
others; a bad setting; Ctrl-C during training, which stops every rank after
the same step) ends each of them with its exit status, rank 0 alone printing
the line. Any other error, on any rank, is printed by that rank and ends every
rank at once with ``MPI_Abort``, so that none waits forever in a collective
for a rank that is gone (a rank killed by a signal is ended by ``mpiexec``
itself). The last checkpoint, written atomically, stays as it was.
"""

import os
import sys
import time
import traceback

from cconv.cli._common import EXIT_INTERRUPTED, Interrupted, UsageError
from cconv.distributed import raised_on_every_rank

__all__ = ["World", "start"]

#: How long a rank other than 0 waits before ending all on an interrupt, so that
#: rank 0 (which says what is saved) ends them first.
_ROOT_FIRST_SECONDS = 1.0


def start(console):
    """Join the MPI job; a :class:`World`. ``UsageError`` (exit 2) without mpi4py or an MPI."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise UsageError(
            f"--distributed needs mpi4py and an MPI library ({exc}): pip install 'cconv[mpi]'"
        ) from exc
    world = World(MPI)
    if world.size == 1:
        console.note("--distributed: one process (start it with 'mpiexec -n K' to train with K)")
    world.share_cores(console)
    return world


class World:
    """This rank of ``MPI.COMM_WORLD``, and the ranks on its machine."""

    def __init__(self, mpi):
        self.mpi = mpi
        self.comm = mpi.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.machine = self.comm.Split_type(mpi.COMM_TYPE_SHARED)  # the ranks sharing this machine's memory
        self._blas_limit = None  # threadpoolctl's limit of the BLAS threads, kept for the run

    @property
    def is_root(self):
        """Rank 0: it prints, and writes the run folder."""
        return self.rank == 0

    def share_cores(self, console):
        """Without ``OMP_NUM_THREADS``: each rank on a machine gets an equal share of its cores.

        Sets cconv's kernel threads and the BLAS threads (threadpoolctl), so
        that K ranks on one machine do not run K times as many threads as it
        has cores.
        """
        if "OMP_NUM_THREADS" in os.environ:
            return
        ranks_here = self.machine.Get_size()
        if ranks_here == 1:
            return
        import threadpoolctl

        import cconv

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // ranks_here)
        cconv.set_num_threads(threads)
        self._blas_limit = threadpoolctl.threadpool_limits(threads, user_api="blas")
        if self.is_root:
            console.note(
                f"--distributed: {ranks_here} processes on this machine of {cores} cores: "
                f"{threads} thread(s) each (set OMP_NUM_THREADS to choose)"
            )

    def machine_first(self, function):
        """``function()`` on one rank of each machine, then on the others of that machine.

        For a data set that may need a download: one rank per machine fetches
        it while the others wait, then they read it from disk.
        """
        if self.machine.Get_rank() == 0:
            result = function()
            self.machine.Barrier()
            return result
        self.machine.Barrier()
        return function()

    def finish(self, error, report):
        """End this rank after the command raised ``error``: return its exit status, or end all ranks.

        ``report(error, prefix, quiet)`` prints the error's line (not when
        ``quiet``) and returns its exit status, raising the error again for an
        unexpected one.
        """
        if raised_on_every_rank(error) or self.size == 1:  # every rank stopped at the same point
            return report(error, "", not self.is_root)
        if isinstance(error, (KeyboardInterrupt, Interrupted)):
            if self.is_root:
                self.abort(report(error, "", False))
            time.sleep(_ROOT_FIRST_SECONDS)
            self.abort(EXIT_INTERRUPTED)
        prefix = f"rank {self.rank} of {self.size}: "
        try:
            status = report(error, prefix, False)
        except BaseException:
            print(f"cconv: {prefix}unexpected error, ending all ranks:", file=sys.stderr)
            traceback.print_exception(error)
            status = 1
        self.abort(status)

    def abort(self, status):
        """End every rank of the job now, with ``status``."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(status)

