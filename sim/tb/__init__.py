"""cocotb testbenches (one module per RTL block), run by :func:`proxima.sim.runner.run_cocotb`."""
