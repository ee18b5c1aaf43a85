"""Every plugin eigenflow registers runs the conformance suite of its kind.

``distribution = "eigenflow"``: eigenflow's own plugins, so that a third-party plugin
installed in the environment (tested by its author with the same suite) cannot fail
eigenflow's test command. A new built-in plugin is tested the moment it registers.
"""

from eigenflow.testing import (
    ConstraintConformance,
    DatasetConformance,
    LayerConformance,
    MetricConformance,
    ModelConformance,
    PipelineConformance,
    SolverConformance,
    TraversalConformance,
)


class TestSolvers(SolverConformance):
    distribution = "eigenflow"


class TestLayers(LayerConformance):
    distribution = "eigenflow"


class TestMetrics(MetricConformance):
    distribution = "eigenflow"


class TestConstraints(ConstraintConformance):
    distribution = "eigenflow"


class TestTraversals(TraversalConformance):
    distribution = "eigenflow"


class TestModels(ModelConformance):
    distribution = "eigenflow"


class TestDatasets(DatasetConformance):
    distribution = "eigenflow"


class TestPipelines(PipelineConformance):
    distribution = "eigenflow"
