"""`python -m lpllm.cli COMMAND ...` is `lpllm COMMAND ...`, for launchers that start a module on every process
(`accelerate launch -m lpllm.cli read ...`, `torchrun -m lpllm.cli read ...`)."""

import sys

from . import console_main


sys.exit(console_main())
