"""FPGA board tops, host link, bitstream builds and the host driver."""
