"""The PBX: what callbridge does with the SIP requests it receives."""
