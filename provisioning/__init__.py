"""buildfleet: multi-architecture Docker build hosts as code.

Data flows one way: settings -> plan (placement) -> target -> inventory -> hosts ->
builder -> bench. Each stage is a module that never imports a later one.
"""

__version__ = "0.1.0"
