"""smsd.modem"""
