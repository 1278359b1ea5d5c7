//! Every metric the node records: names, labels and help text in one place, so that the Grafana
//! dashboard and the documentation can be checked against them. (Being written.)
