"""basal_ganglia"""
