# Sourced by scripts/test and scripts/bench: fetches the jars of Apache Kafka (KRaft, run with
# the machine's JDK) from Maven Central into the cache, once per version, and exports
# HERALD_KAFKA_LIBS. The tests start and stop their own brokers from these jars.
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
kafka_dir="$HERALD_CACHE/kafka-$KAFKA_VERSION"
if [ ! -f "$kafka_dir/.complete" ]; then
  echo "fetching Apache Kafka $KAFKA_VERSION jars into $kafka_dir"
  rm -rf "$kafka_dir"
  mvn --batch-mode --quiet -f scripts/kafka/pom.xml \
    -Dmaven.repo.local="$HERALD_CACHE/m2" \
    dependency:copy-dependencies -DoutputDirectory="$kafka_dir/libs"
  touch "$kafka_dir/.complete"
fi
export HERALD_KAFKA_LIBS="$kafka_dir/libs"
# Brokers the tests start write their PID here; any left behind by a killed test run are
# stopped at the end (see scripts/test).
export HERALD_KAFKA_PIDS="$HERALD_CACHE/kafka-pids"
mkdir -p "$HERALD_KAFKA_PIDS"
stop_leftover_kafka() {
  for pidfile in "$HERALD_KAFKA_PIDS"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # Only a Kafka broker: the PID may belong to something else by now.
    if grep -qs kafka.Kafka "/proc/$pid/cmdline"; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -f "$pidfile"
  done
}
java -version 2>&1 | head -1
echo "kafka $KAFKA_VERSION: $(ls "$HERALD_KAFKA_LIBS" | wc -l) jars"
