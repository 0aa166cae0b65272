#!/usr/bin/env bash
# A real OpenStack Zed control plane from Debian 12's own packages, without
# systemd, for the provider's tests and the façade's parity runs.
#
#   test/openstack/devstack-lite.sh install   # packages (skipped when installed; apt keeps the .debs)
#   test/openstack/devstack-lite.sh start     # databases, configuration (first time), every service; prints the OS_* variables
#   test/openstack/devstack-lite.sh stop      # stops what start started (by pid)
#   test/openstack/devstack-lite.sh env       # the OS_* variables of a running installation
#
# Everything listens on 127.0.0.1; state, configuration, logs and pids live
# in $OS_LITE_DIR (default /var/tmp/infraflow-openstack), kept between runs so
# a second start skips the database setup. Nova runs the fake compute driver
# (servers go ACTIVE without a hypervisor); Neutron runs ML2 without agents,
# with a tiny mechanism driver of our own (infraflow_bindall) that binds every
# port (vif_type tap) so ports do not end binding_failed. Keystone runs under
# uwsgi with `Connection: close` on every response (uwsgi --http-socket resets
# reused connections otherwise).
#
# STATUS: install, MariaDB, RabbitMQ, Keystone, Glance, Placement are written
# from the issue's recipe; nova/neutron start from their nova.cmd/neutron
# entry points. See docs/openstack.md for what has been verified on this
# machine and what is left.
set -euo pipefail

DIR=${OS_LITE_DIR:-/var/tmp/infraflow-openstack}
HOST=127.0.0.1
PASS=${OS_LITE_PASSWORD:-infraflow-openstack}
# ports: fixed offsets from a base (one installation per machine; change the base to move it)
BASE=${OS_LITE_PORT_BASE:-25000}
P_MYSQL=$((BASE + 6)) P_RABBIT=$((BASE + 72)) P_EPMD=$((BASE + 69)) P_KEYSTONE=$((BASE + 0)) P_GLANCE=$((BASE + 92))
P_PLACEMENT=$((BASE + 78)) P_NOVA=$((BASE + 74)) P_NEUTRON=$((BASE + 96))

PACKAGES="mariadb-server python3-pymysql rabbitmq-server keystone glance-api glance-common placement-api python3-placement nova-common python3-nova neutron-common python3-neutron python3-openstackclient uwsgi-core uwsgi-plugin-python3"

log() { printf 'devstack-lite: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

install() {
  local missing=()
  for p in $PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && { log "packages already installed"; return; }
  [ "$(id -u)" = 0 ] || die "not root: cannot install ${missing[*]}"
  # no service starts during installation (no systemd here; we start what we need ourselves)
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  # Debian's OpenStack packages must not configure databases or endpoints themselves
  for p in keystone glance-common nova-common neutron-common placement-common; do
    echo "$p $p/configure_db boolean false" | debconf-set-selections 2>/dev/null || true
    echo "$p $p/register-endpoint boolean false" | debconf-set-selections 2>/dev/null || true
  done
  echo "keystone keystone/create-admin-tenant boolean false" | debconf-set-selections 2>/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
}

pidof_svc() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }
running() { local p; p=$(pidof_svc "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
daemon() { # name, command...
  local name=$1; shift
  running "$name" && return
  nohup "$@" >"$DIR/log/$name.log" 2>&1 &
  echo $! >"$DIR/run/$name.pid"
}
wait_port() { # port, name
  for _ in $(seq 1 240); do
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && { exec 3>&- 3<&- || true; return 0; }
    running "$2" || die "$2 exited: $(tail -20 "$DIR/log/$2.log")"
    sleep 0.5
  done
  die "$2 did not listen on $1: $(tail -20 "$DIR/log/$2.log")"
}
sql() { mysql --socket="$DIR/run/mysqld.sock" -uroot "$@"; }
db_url() { echo "mysql+pymysql://$1:$PASS@$HOST:$P_MYSQL/$1?charset=utf8"; }

start_mariadb() {
  mkdir -p "$DIR/mysql"
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1
  fi
  daemon mysqld mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mysqld.real.pid" \
    --bind-address=$HOST --port=$P_MYSQL --max-connections=1000 --innodb-buffer-pool-size=256M --skip-log-bin
  wait_port $P_MYSQL mysqld
  for db in keystone glance placement nova_api nova nova_cell0 neutron; do
    local user=$db; [ "$db" = nova_api ] || [ "$db" = nova_cell0 ] && user=nova
    sql -e "CREATE DATABASE IF NOT EXISTS $db; CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$PASS'; CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$PASS'; GRANT ALL ON $db.* TO '$user'@'%'; GRANT ALL ON $db.* TO '$user'@'localhost';"
  done
}

start_rabbit() {
  mkdir -p "$DIR/rabbitmq/mnesia"
  export RABBITMQ_NODE_IP_ADDRESS=$HOST RABBITMQ_NODE_PORT=$P_RABBIT RABBITMQ_DIST_PORT=$((P_RABBIT + 1000)) ERL_EPMD_PORT=$P_EPMD ERL_EPMD_ADDRESS=$HOST
  export RABBITMQ_FEATURE_FLAGS_FILE="$DIR/rabbitmq/feature_flags" RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbitmq/enabled_plugins" RABBITMQ_CONFIG_FILE="$DIR/rabbitmq/rabbitmq" RABBITMQ_PID_FILE="$DIR/run/rabbitmq.real.pid"
  export RABBITMQ_MNESIA_BASE="$DIR/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$DIR/rabbitmq/log" RABBITMQ_NODENAME="infraflow@localhost"
  # Debian's rabbitmq-server runs the broker as the rabbitmq user
  mkdir -p "$DIR/rabbitmq/log"
  id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq:rabbitmq "$DIR/rabbitmq"
  daemon rabbitmq rabbitmq-server
  wait_port $P_RABBIT rabbitmq
  sleep 3
  rabbitmqctl -n infraflow@localhost add_user openstack "$PASS" >/dev/null 2>&1 || true
  rabbitmqctl -n infraflow@localhost set_permissions openstack '.*' '.*' '.*' >/dev/null
}

authtoken() { # section for a service user
  cat <<EOF
[keystone_authtoken]
www_authenticate_uri = http://$HOST:$P_KEYSTONE/v3
auth_url = http://$HOST:$P_KEYSTONE/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PASS
service_token_roles_required = true
EOF
}

configure() {
  mkdir -p "$DIR/etc" "$DIR/images" "$DIR/fernet" "$DIR/credential" "$DIR/py/infraflow_bindall" "$DIR/py/infraflow_bindall-0.1.dist-info"
  cat >"$DIR/etc/keystone.conf" <<EOF
[DEFAULT]
log_dir = $DIR/log
[database]
connection = $(db_url keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $DIR/fernet
[credential]
key_repository = $DIR/credential
EOF
  cat >"$DIR/etc/glance-api.conf" <<EOF
[DEFAULT]
bind_host = $HOST
bind_port = $P_GLANCE
enabled_backends = file:file
[database]
connection = $(db_url glance)
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $DIR/images
[paste_deploy]
flavor = keystone
$(authtoken glance)
EOF
  cat >"$DIR/etc/placement.conf" <<EOF
[placement_database]
connection = $(db_url placement)
[api]
auth_strategy = keystone
$(authtoken placement)
EOF
  cat >"$DIR/etc/nova.conf" <<EOF
[DEFAULT]
transport_url = rabbit://openstack:$PASS@$HOST:$P_RABBIT/
compute_driver = fake.FakeDriver
host = infraflow-fake
my_ip = $HOST
osapi_compute_listen = $HOST
osapi_compute_listen_port = $P_NOVA
metadata_listen = $HOST
enabled_apis = osapi_compute
state_path = $DIR/nova
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
[api_database]
connection = $(db_url nova_api | sed 's#/nova_api?#/nova_api?#; s#//nova_api:#//nova:#')
[database]
connection = $(db_url nova | sed 's#//nova:#//nova:#')
[api]
auth_strategy = keystone
$(authtoken nova)
[placement]
auth_url = http://$HOST:$P_KEYSTONE/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = placement
password = $PASS
region_name = RegionOne
[neutron]
auth_url = http://$HOST:$P_KEYSTONE/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = neutron
password = $PASS
region_name = RegionOne
[glance]
api_servers = http://$HOST:$P_GLANCE
[oslo_concurrency]
lock_path = $DIR/nova/lock
[scheduler]
discover_hosts_in_cells_interval = 10
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
EOF
  sed -i "s#^connection = mysql+pymysql://nova_api:#connection = mysql+pymysql://nova:#" "$DIR/etc/nova.conf"
  cat >"$DIR/etc/neutron.conf" <<EOF
[DEFAULT]
bind_host = $HOST
bind_port = $P_NEUTRON
core_plugin = ml2
service_plugins = router
transport_url = rabbit://openstack:$PASS@$HOST:$P_RABBIT/
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
api_paste_config = /etc/neutron/api-paste.ini
state_path = $DIR/neutron
[database]
connection = $(db_url neutron)
$(authtoken neutron)
[oslo_concurrency]
lock_path = $DIR/neutron/lock
[ml2]
type_drivers = flat,vlan,local
tenant_network_types = local
mechanism_drivers = infraflow_bindall
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
EOF
  # the mechanism driver that binds every port: no agents run, so nothing else would
  cat >"$DIR/py/infraflow_bindall/__init__.py" <<'EOF'
from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class BindAll(api.MechanismDriver):
    """Binds every port to the host that asks (vif_type tap), and marks it ACTIVE."""

    def initialize(self):
        pass

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_TAP, {portbindings.CAP_PORT_FILTER: False}, status=constants.PORT_STATUS_ACTIVE)
            return
EOF
  cat >"$DIR/py/infraflow_bindall-0.1.dist-info/METADATA" <<'EOF'
Metadata-Version: 2.1
Name: infraflow-bindall
Version: 0.1
EOF
  cat >"$DIR/py/infraflow_bindall-0.1.dist-info/entry_points.txt" <<'EOF'
[neutron.ml2.mechanism_drivers]
infraflow_bindall = infraflow_bindall:BindAll
EOF
  mkdir -p "$DIR/nova/lock" "$DIR/neutron/lock"
}

bootstrap_once() {
  [ -f "$DIR/bootstrapped" ] && return
  keystone-manage --config-file "$DIR/etc/keystone.conf" db_sync
  keystone-manage --config-file "$DIR/etc/keystone.conf" fernet_setup --keystone-user root --keystone-group root
  keystone-manage --config-file "$DIR/etc/keystone.conf" credential_setup --keystone-user root --keystone-group root
  keystone-manage --config-file "$DIR/etc/keystone.conf" bootstrap --bootstrap-password "$PASS" \
    --bootstrap-admin-url "http://$HOST:$P_KEYSTONE/v3/" --bootstrap-internal-url "http://$HOST:$P_KEYSTONE/v3/" \
    --bootstrap-public-url "http://$HOST:$P_KEYSTONE/v3/" --bootstrap-region-id RegionOne
  glance-manage --config-file "$DIR/etc/glance-api.conf" db_sync
  placement-manage --config-file "$DIR/etc/placement.conf" db sync
  nova-manage --config-file "$DIR/etc/nova.conf" api_db sync
  nova-manage --config-file "$DIR/etc/nova.conf" cell_v2 map_cell0 --database_connection "$(db_url nova_cell0 | sed 's#//nova_cell0:#//nova:#')"
  nova-manage --config-file "$DIR/etc/nova.conf" cell_v2 create_cell --name cell1 --verbose || true
  nova-manage --config-file "$DIR/etc/nova.conf" db sync
  neutron-db-manage --config-file "$DIR/etc/neutron.conf" upgrade heads
  touch "$DIR/bootstrapped.db"
}

admin_env() {
  cat <<EOF
export OS_AUTH_URL=http://$HOST:$P_KEYSTONE/v3 OS_USERNAME=admin OS_PASSWORD=$PASS OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne
export OS_TEST_FLAVOR=m1.tiny OS_TEST_IMAGE=cirros OS_PUBLIC_NETWORK=public
EOF
}

register_once() {
  [ -f "$DIR/bootstrapped" ] && return
  eval "$(admin_env)"
  openstack project show service >/dev/null 2>&1 || openstack project create service >/dev/null
  for u in glance placement nova neutron; do
    openstack user show $u >/dev/null 2>&1 || openstack user create --domain default --password "$PASS" $u >/dev/null
    openstack role add --project service --user $u admin
    openstack role add --project service --user $u service 2>/dev/null || { openstack role create service >/dev/null; openstack role add --project service --user $u service; }
  done
  svc() { # type name url
    openstack service show "$2" >/dev/null 2>&1 || openstack service create --name "$2" "$1" >/dev/null
    for i in public internal admin; do openstack endpoint create --region RegionOne "$1" $i "$3" >/dev/null; done
  }
  svc image glance "http://$HOST:$P_GLANCE"
  svc placement placement "http://$HOST:$P_PLACEMENT"
  svc compute nova "http://$HOST:$P_NOVA/v2.1"
  svc network neutron "http://$HOST:$P_NEUTRON"
  touch "$DIR/bootstrapped"
}

start() {
  install
  mkdir -p "$DIR/run" "$DIR/log"
  cd "$DIR"
  start_mariadb
  start_rabbit
  configure
  [ -f "$DIR/bootstrapped.db" ] || bootstrap_once
  daemon keystone uwsgi --plugin python3 --http-socket "$HOST:$P_KEYSTONE" --wsgi-file /usr/bin/keystone-wsgi-public \
    --processes 2 --threads 2 --master --add-header "Connection: close" --env "OS_KEYSTONE_CONFIG_FILES=$DIR/etc/keystone.conf"
  wait_port $P_KEYSTONE keystone
  register_once
  daemon glance glance-api --config-file "$DIR/etc/glance-api.conf"
  daemon placement uwsgi --plugin python3 --http-socket "$HOST:$P_PLACEMENT" --wsgi-file /usr/bin/placement-api --processes 1 --threads 2 --master \
    --add-header "Connection: close" --env "OS_PLACEMENT_CONFIG_DIR=$DIR/etc"
  export PYTHONPATH="$DIR/py${PYTHONPATH:+:$PYTHONPATH}"
  daemon neutron neutron-server --config-file "$DIR/etc/neutron.conf"
  # -P: the state directory (cwd) holds a nova/ directory that must not shadow the nova package
  local n="/usr/bin/python3 -P -c"
  daemon nova-api $n "import sys; sys.argv=['nova-api','--config-file','$DIR/etc/nova.conf']; from nova.cmd.api import main; main()"
  daemon nova-conductor $n "import sys; sys.argv=['nova-conductor','--config-file','$DIR/etc/nova.conf']; from nova.cmd.conductor import main; main()"
  daemon nova-scheduler $n "import sys; sys.argv=['nova-scheduler','--config-file','$DIR/etc/nova.conf']; from nova.cmd.scheduler import main; main()"
  daemon nova-compute $n "import sys; sys.argv=['nova-compute','--config-file','$DIR/etc/nova.conf']; from nova.cmd.compute import main; main()"
  wait_port $P_GLANCE glance
  wait_port $P_PLACEMENT placement
  wait_port $P_NEUTRON neutron
  wait_port $P_NOVA nova-api
  nova-manage --config-file "$DIR/etc/nova.conf" cell_v2 discover_hosts --verbose >/dev/null || true
  seed_once
  admin_env
}

seed_once() {
  [ -f "$DIR/seeded" ] && return
  eval "$(admin_env)"
  openstack flavor show m1.tiny >/dev/null 2>&1 || openstack flavor create --ram 256 --disk 1 --vcpus 1 m1.tiny >/dev/null
  if ! openstack image show cirros >/dev/null 2>&1; then
    head -c 1048576 /dev/zero >"$DIR/cirros.raw"
    openstack image create --disk-format raw --container-format bare --public --file "$DIR/cirros.raw" cirros >/dev/null
  fi
  openstack network show public >/dev/null 2>&1 || {
    openstack network create --external --provider-network-type flat --provider-physical-network public public >/dev/null
    openstack subnet create --network public --subnet-range 203.0.113.0/24 --no-dhcp public-subnet >/dev/null
  }
  touch "$DIR/seeded"
}

stop() {
  # uwsgi reloads on SIGTERM: SIGINT stops it; RabbitMQ stops through rabbitmqctl (its broker runs as rabbitmq)
  for s in keystone placement; do local p; p=$(pidof_svc "$s"); [ -n "$p" ] && kill -INT "$p" 2>/dev/null || true; done
  HOME="$DIR/rabbitmq" ERL_EPMD_PORT=$P_EPMD timeout 30 rabbitmqctl -n infraflow@localhost stop >/dev/null 2>&1 || true
  for s in nova-compute nova-scheduler nova-conductor nova-api neutron glance mysqld; do
    local p; p=$(pidof_svc "$s")
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  rm -f "$DIR"/run/*.pid
  log "stopped"
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) admin_env ;;
  *) die "usage: $0 install|start|stop|env" ;;
esac
