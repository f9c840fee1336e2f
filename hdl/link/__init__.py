"""Host-link gateware: UART PHY (:mod:`.uart`) and the frame receiver / sender (:mod:`.framing`)."""
