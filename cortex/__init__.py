"""cortex"""
