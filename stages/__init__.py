"""The pipeline's stage entry points (`python -m stages.NAME`); see dvc.yaml.

Each is thin: parse paths, load the typed params, call the library, write outputs. Importing the
package pins the CPU kernel libraries' dispatch (stages.edge) before any stage imports torch or numpy.
"""

import gc

from stages.edge import pin_cpu_kernels

gc.disable()  # imports make long-lived objects only: collecting during them is wasted work (run_stage)
pin_cpu_kernels()
