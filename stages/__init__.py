"""The pipeline's stage entry points (`python -m stages.NAME`); see dvc.yaml.

Importing the package pins the CPU kernel libraries' dispatch (circlefit.pins) before any stage
module imports torch or numpy.
"""

from circlefit.pins import pin_cpu_kernels

pin_cpu_kernels()
