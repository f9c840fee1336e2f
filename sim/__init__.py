"""Verification harness: Verilog generation, Verilator/Icarus set-up, cocotb runners."""
